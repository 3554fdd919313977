// What every CUDA C++ kernel of ours (`mma_attention.cu`, `gemv.cu`) takes from the device: put ahead of each
// kernel's source by `fused::nvrtc::PRELUDE` (NVRTC has no include path here). The CPU emulator
// (`crates/model/emulate/emu.h`) defines the same names for the host instead and does not read this file.

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define MMA_DEVICE __device__ __forceinline__

// A value from the lane whose index differs from this one's in bits `m` (a butterfly step), whole warp.
MMA_DEVICE float shfl_xor(float v, int m) {
    float r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(m));
    return r;
}

// The two 16-bit floats of a register as f32: `lo` from bits 15:0, `hi` from bits 31:16 (bf16 where the includer
// defines MMA_BF16 as 1, else f16).
MMA_DEVICE void halves(u32 r, float& lo, float& hi) {
#if MMA_BF16
    lo = __uint_as_float(r << 16);
    hi = __uint_as_float(r & 0xffff0000u);
#else
    asm("{ .reg .b16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }"
        : "=f"(lo), "=f"(hi)
        : "r"(r));
#endif
}
