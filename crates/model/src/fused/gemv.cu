// y = x · wᵀ for x of at most 4 rows (decoding at batch 1–4): every weight is read from memory once per step,
// so the product runs at memory speed or not at all. One warp per output column (a row of w): each lane issues
// UNROLL 16-byte loads of the weight row before it uses any of them, so a warp keeps UNROLL × 512 bytes in
// flight; the weights bypass L1 (`ld.global.nc.L1::no_allocate`), which keeps x there for every column's reads.
// Dot products in f32, reduced across the warp by butterfly shuffles. Compiled at run time with NVRTC
// (`fused::gemv`); the host emulator (`crates/model/emulate/`) runs this same file on the CPU.
//
// What the includer defines first: MMA_BF16 (1: bf16, 0: f16) and UNROLL (loads in flight per lane), then
// `cuda_prelude.cuh`; in the emulator, MMA_EMULATE and the primitives below instead.

#define GEMV_WARPS 8
#define GEMV_THREADS (GEMV_WARPS * 32)
#define GEMV_MAX_M 4

#ifndef MMA_EMULATE
struct Vec4 {
    u32 x, y, z, w;
};

// 16 bytes of weights, not kept in L1 (read once).
MMA_DEVICE Vec4 load_stream(const u16* p) {
    Vec4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}
// 16 bytes of x (read by every column: cached).
MMA_DEVICE Vec4 load_cached(const u16* p) {
    Vec4 v;
    asm volatile("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

MMA_DEVICE u16 to_bits(float f) {
    u16 h;
#if MMA_BF16
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
#else
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
#endif
    return h;
}

#define GEMV_KERNEL extern "C" __global__ void __launch_bounds__(GEMV_THREADS)
#define GEMV_TID ((int)threadIdx.x)
#define GEMV_BLOCK ((int)blockIdx.x)
#endif

// `GemvParams` in `fused::gemv`, field for field. Strides in elements; k is a multiple of 8 and every row
// starts 16-byte aligned.
struct GemvParams {
    const u16* x;
    const u16* w;
    u16* y;
    i64 x_stride, w_stride, y_stride;
    int m, n, k, pad;
};

MMA_DEVICE float dot8(Vec4 a, Vec4 b) {
    const u32 aw[4] = {a.x, a.y, a.z, a.w}, bw[4] = {b.x, b.y, b.z, b.w};
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        float al, ah, bl, bh;
        halves(aw[i], al, ah);
        halves(bw[i], bl, bh);
        s += al * bl;
        s += ah * bh;
    }
    return s;
}

GEMV_KERNEL mmreason_gemv(GemvParams p) {
    const int tid = GEMV_TID;
    const int warp = tid >> 5, lane = tid & 31;
    const int col = GEMV_BLOCK * GEMV_WARPS + warp;
    // A whole warp shares its column: warps past n leave together (no barrier in this kernel).
    if (col >= p.n) {
        return;
    }
    const int kv = p.k / 8;  // 16-byte vectors per row
    const u16* wr = p.w + (i64)col * p.w_stride;
    float acc[GEMV_MAX_M];
#pragma unroll
    for (int r = 0; r < GEMV_MAX_M; ++r) {
        acc[r] = 0.0f;
    }
    for (int base = 0; base < kv; base += 32 * UNROLL) {
        Vec4 wv[UNROLL];
        // Every load of this stretch first, then the arithmetic: UNROLL loads in flight per lane.
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int i = base + u * 32 + lane;
            if (i < kv) {
                wv[u] = load_stream(wr + (i64)i * 8);
            } else {
                wv[u] = Vec4{0u, 0u, 0u, 0u};
            }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int i = base + u * 32 + lane;
            if (i < kv) {
#pragma unroll
                for (int r = 0; r < GEMV_MAX_M; ++r) {
                    if (r < p.m) {
                        acc[r] += dot8(wv[u], load_cached(p.x + r * p.x_stride + (i64)i * 8));
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_MAX_M; ++r) {
        float v = acc[r];
        v += shfl_xor(v, 16);
        v += shfl_xor(v, 8);
        v += shfl_xor(v, 4);
        v += shfl_xor(v, 2);
        v += shfl_xor(v, 1);
        if (lane == 0 && r < p.m) {
            p.y[r * p.y_stride + col] = to_bits(v);
        }
    }
}
