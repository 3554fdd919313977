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
