// Runs `src/fused/mma_attention.cu` on the CPU: the kernel's own source, with its device primitives (mma.sync,
// shuffles, cp.async, barriers) emulated, checked against attention computed in f64 from the same 16-bit
// inputs. No GPU can check this kernel between device runs; this checks everything but the hardware's fragment
// layouts (taken from the PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type") and its
// rounding.
//
// Each thread of a cube is a user-level context (ucontext) on one OS thread, run in turn until it reaches a
// barrier: block barriers for __syncthreads, warp barriers inside each warp-level operation (every lane
// deposits its operands, all meet, each computes its own result, all meet again). cp.async copies are held
// back per thread until that thread waits for them, so a read of shared memory before the wait (and barrier)
// that should guard it reads stale data and fails the comparison.
//
//   c++ -std=c++20 -O2 -DMMA_BF16=1 -DHEAD_DIM=64 -DMASK_MODE=1 mma_attention_emu.cpp -o emu && ./emu
//
// Prints one line per case and exits 1 if any relative L2 error exceeds the dtype's bound (or a value is not
// finite), 0 otherwise.

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#define MMA_EMULATE 1
typedef uint16_t u16;
typedef uint32_t u32;
typedef long long i64;

#define MMA_DEVICE static inline
#define MMA_KERNEL static void
#define MMA_SHARED alignas(16) static
#define THREADS_EMU 128

// ---- 16-bit floats ---------------------------------------------------------------------------------------
static float bits_to_f32(u16 h) {
#if MMA_BF16
    u32 w = (u32)h << 16;
    float f;
    std::memcpy(&f, &w, 4);
    return f;
#else
    _Float16 x;
    std::memcpy(&x, &h, 2);
    return (float)x;
#endif
}
static u16 f32_to_bits(float f) {
#if MMA_BF16
    u32 w;
    std::memcpy(&w, &f, 4);
    if ((w & 0x7fffffff) > 0x7f800000) return (u16)((w >> 16) | 0x40);  // NaN stays NaN
    w += 0x7fff + ((w >> 16) & 1);                                        // round to nearest even
    return (u16)(w >> 16);
#else
    _Float16 x = (_Float16)f;  // round to nearest even
    u16 h;
    std::memcpy(&h, &x, 2);
    return h;
#endif
}

// ---- the scheduler -------------------------------------------------------------------------------------------
struct Lane {
    ucontext_t ctx;
    std::vector<char> stack;
    bool done = false;
    // Held-back cp.async copies: (destination, 16 bytes or zeros).
    struct Copy {
        void* dst;
        unsigned char bytes[16];
    };
    std::vector<Copy> pending;
};
static Lane lanes[THREADS_EMU];
static ucontext_t scheduler;
static int current = 0;
static int block_x, block_y, block_z, grid_x;

static void yield_now() { swapcontext(&lanes[current].ctx, &scheduler); }

struct Barrier {
    int count = 0, generation = 0, size = 0;
    void wait() {
        const int gen = generation;
        if (++count == size) {
            count = 0;
            ++generation;
            return;
        }
        while (generation == gen) yield_now();
    }
};
static Barrier block_barrier;
static Barrier warp_barrier[THREADS_EMU / 32];

// Per warp: the operands each lane deposits for a warp-level operation.
struct WarpScratch {
    u32 a[32][4];
    u32 b[32][2];
    float c[32][4];
    float v[32];
};
static WarpScratch scratch[THREADS_EMU / 32];

#define MMA_TID current
#define MMA_BLOCK_X block_x
#define MMA_BLOCK_Y block_y
#define MMA_BLOCK_Z block_z
#define MMA_GRID_X grid_x
#define MMA_SYNC() block_barrier.wait()

MMA_DEVICE float neg_inf() { return -INFINITY; }

MMA_DEVICE void cp_async16(void* dst, const void* src, bool valid) {
    Lane::Copy c;
    c.dst = dst;
    if (valid)
        std::memcpy(c.bytes, src, 16);
    else
        std::memset(c.bytes, 0, 16);
    lanes[current].pending.push_back(c);
}
MMA_DEVICE void cp_async_commit() {}
MMA_DEVICE void cp_async_wait_all() {
    for (auto& c : lanes[current].pending) std::memcpy(c.dst, c.bytes, 16);
    lanes[current].pending.clear();
}

MMA_DEVICE float shfl_xor(float v, int m) {
    const int w = current / 32, l = current % 32;
    scratch[w].v[l] = v;
    warp_barrier[w].wait();
    const float r = scratch[w].v[l ^ m];
    warp_barrier[w].wait();
    return r;
}

MMA_DEVICE float exp2_approx(float x) { return std::exp2(x); }

// ldmatrix .m8n8.x4 (.trans) .b16, as the PTX ISA describes it: lane l gives the address of row l % 8 of matrix
// l / 8; in register j, lane l receives row l / 4 of matrix j, columns 2·(l % 4) and the next (lower column in
// the lower half); with .trans, column l / 4 and rows 2·(l % 4) and the next. Rows must be 16-byte aligned.
static void ldsm(u32* r, const u16* row, bool trans) {
    const int w = current / 32, l = current % 32;
    static const u16* rows[THREADS_EMU / 32][32];
    if (((uintptr_t)row & 15) != 0) {
        std::fprintf(stderr, "ldmatrix: a row address not 16-byte aligned\n");
        std::exit(1);
    }
    rows[w][l] = row;
    warp_barrier[w].wait();
    const int g = l >> 2, t = l & 3;
    for (int j = 0; j < 4; ++j) {
        u16 lo, hi;
        if (trans) {
            lo = rows[w][j * 8 + 2 * t][g];
            hi = rows[w][j * 8 + 2 * t + 1][g];
        } else {
            lo = rows[w][j * 8 + g][2 * t];
            hi = rows[w][j * 8 + g][2 * t + 1];
        }
        r[j] = (u32)lo | ((u32)hi << 16);
    }
    warp_barrier[w].wait();
}
MMA_DEVICE void ldsm_x4(u32* r, const u16* row) { ldsm(r, row, false); }
MMA_DEVICE void ldsm_x4_trans(u32* r, const u16* row) { ldsm(r, row, true); }

MMA_DEVICE u32 pack2(float lo, float hi) { return (u32)f32_to_bits(lo) | ((u32)f32_to_bits(hi) << 16); }

static float half_of(u32 r, int i) { return bits_to_f32((u16)(i ? r >> 16 : r & 0xffff)); }

// The PTX ISA's m16n8k16 fragment layouts: groupID = lane >> 2, threadID_in_group = lane % 4.
MMA_DEVICE void mma16816(float* d, const u32* a, u32 b0, u32 b1) {
    const int w = current / 32, l = current % 32;
    WarpScratch& s = scratch[w];
    for (int i = 0; i < 4; ++i) s.a[l][i] = a[i];
    s.b[l][0] = b0;
    s.b[l][1] = b1;
    for (int i = 0; i < 4; ++i) s.c[l][i] = d[i];
    warp_barrier[w].wait();
    float A[16][16], B[16][8], C[16][8];
    for (int ln = 0; ln < 32; ++ln) {
        const int g = ln >> 2, t = ln & 3;
        for (int i = 0; i < 8; ++i) {  // a0..a7: two per register
            const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
            const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
            A[row][col] = half_of(s.a[ln][i / 2], i & 1);
        }
        for (int i = 0; i < 4; ++i) {  // b0..b3
            const int row = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
            B[row][g] = half_of(s.b[ln][i / 2], i & 1);
        }
        for (int i = 0; i < 4; ++i) {
            const int row = i < 2 ? g : g + 8;
            C[row][t * 2 + (i & 1)] = s.c[ln][i];
        }
    }
    const int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; ++i) {
        const int row = i < 2 ? g : g + 8, col = t * 2 + (i & 1);
        double acc = C[row][col];
        for (int k = 0; k < 16; ++k) acc += (double)A[row][k] * (double)B[k][col];
        d[i] = (float)acc;
    }
    warp_barrier[w].wait();
}

#include "../src/fused/mma_attention.cu"

// ---- running a grid ------------------------------------------------------------------------------------------
static MmaParams params;

static void lane_main() {
    mmreason_mma_attention(params);
    lanes[current].done = true;
}

static void run_grid(int gx, int gy, int gz) {
    grid_x = gx;
    block_barrier.size = THREADS_EMU;
    for (auto& b : warp_barrier) b.size = 32;
    for (block_z = 0; block_z < gz; ++block_z)
        for (block_y = 0; block_y < gy; ++block_y)
            for (block_x = 0; block_x < gx; ++block_x) {
                for (int i = 0; i < THREADS_EMU; ++i) {
                    Lane& ln = lanes[i];
                    ln.done = false;
                    ln.pending.clear();
                    ln.stack.assign(256 * 1024, 0);
                    getcontext(&ln.ctx);
                    ln.ctx.uc_stack.ss_sp = ln.stack.data();
                    ln.ctx.uc_stack.ss_size = ln.stack.size();
                    ln.ctx.uc_link = &scheduler;
                    makecontext(&ln.ctx, lane_main, 0);
                }
                bool left = true;
                while (left) {
                    left = false;
                    for (current = 0; current < THREADS_EMU; ++current) {
                        if (lanes[current].done) continue;
                        swapcontext(&scheduler, &lanes[current].ctx);
                        left = left || !lanes[current].done;
                    }
                }
                for (auto& ln : lanes)
                    if (!ln.pending.empty()) {
                        std::fprintf(stderr, "a thread ended with cp.async copies it never waited for\n");
                        std::exit(1);
                    }
            }
}

// ---- cases -----------------------------------------------------------------------------------------------------
struct Case {
    const char* name;
    int b, nh, nkv, s, t, cap;
    bool q_permuted;  // q stored as [b, s, nh, d] (a permuted view), else [b, nh, s, d]
    int left_pad;     // mode 2: the first `left_pad` keys of sequence 1 masked (f32::MIN), as left padding does
};

static int run_case(const Case& c, std::mt19937& rng) {
    const int D = HEAD_DIM;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto fill = [&](std::vector<u16>& v, float scale) {
        for (auto& x : v) x = f32_to_bits(normal(rng) * scale);
    };
    // k/v: [b, nkv, cap, d] with only the first t positions read; cap > t leaves NaN beyond (a cache's
    // unwritten tail must not reach the output).
    std::vector<u16> q((size_t)c.b * c.nh * c.s * D), k((size_t)c.b * c.nkv * c.cap * D),
        v((size_t)c.b * c.nkv * c.cap * D);
    fill(q, 1.0f);
    fill(k, 1.0f);
    fill(v, 1.0f);
    const u16 nan_bits = 0x7fc0;
    for (int bi = 0; bi < c.b; ++bi)
        for (int h = 0; h < c.nkv; ++h)
            for (int p = c.t; p < c.cap; ++p)
                for (int e = 0; e < D; ++e) {
                    const size_t i = (((size_t)bi * c.nkv + h) * c.cap + p) * D + e;
                    k[i] = nan_bits;
                    v[i] = nan_bits;
                }
    const i64 q_ss = c.q_permuted ? (i64)c.nh * D : D;
    const i64 q_sh = c.q_permuted ? D : (i64)c.s * D;
    const i64 q_sb = (i64)c.nh * c.s * D;
    std::vector<float> mask((size_t)c.b * c.s * c.t, 0.0f);
    const float fmin = -3.4028234663852886e38f;
    for (int bi = 0; bi < c.b; ++bi)
        for (int i = 0; i < c.s; ++i)
            for (int j = 0; j < c.t; ++j) {
                float m = 0.0f;
                if (MASK_MODE == 2) {
                    // Causal plus left padding of sequence 1; a sliding window of 37 on sequence 0.
                    if (j > i + c.t - c.s) m = fmin;
                    if (bi == 1 && j < c.left_pad) m = fmin;
                    if (bi == 0 && i + c.t - c.s - j >= 37) m = fmin;
                }
                mask[((size_t)bi * c.s + i) * c.t + j] = m;
            }
    // Output [b, s, nh, d], sentinel-filled: positions the kernel should not write stay so.
    std::vector<u16> o((size_t)c.b * c.s * c.nh * D, MMA_BF16 ? 0x7fc0 : 0x7e00);
    const float scale = 1.0f / std::sqrt((float)D);

    params = MmaParams{};
    params.q = q.data();
    params.k = k.data();
    params.v = v.data();
    params.o = o.data();
    params.mask = mask.data();
    params.q_sb = q_sb, params.q_sh = q_sh, params.q_ss = q_ss;
    params.k_sb = (i64)c.nkv * c.cap * D, params.k_sh = (i64)c.cap * D, params.k_ss = D;
    params.v_sb = params.k_sb, params.v_sh = params.k_sh, params.v_ss = D;
    params.o_sb = (i64)c.s * c.nh * D, params.o_sh = D, params.o_ss = (i64)c.nh * D;
    params.m_sb = (i64)c.s * c.t, params.m_ss = c.t;
    params.s = c.s, params.t = c.t, params.group = c.nh / c.nkv;
    params.scale = scale;
    run_grid((c.s + BR - 1) / BR, c.nh, c.b);

    // The reference, in f64 from the same 16-bit inputs.
    double err2 = 0.0, ref2 = 0.0;
    bool finite = true;
    std::vector<double> sc(c.t);
    for (int bi = 0; bi < c.b; ++bi)
        for (int h = 0; h < c.nh; ++h) {
            const int kvh = h / (c.nh / c.nkv);
            for (int i = 0; i < c.s; ++i) {
                const u16* qr = q.data() + bi * q_sb + h * q_sh + i * q_ss;
                double mx = -INFINITY;
                for (int j = 0; j < c.t; ++j) {
                    const u16* kr = k.data() + (((size_t)bi * c.nkv + kvh) * c.cap + j) * D;
                    double dot = 0.0;
                    for (int e = 0; e < D; ++e) dot += (double)bits_to_f32(qr[e]) * bits_to_f32(kr[e]);
                    double x = dot * scale;
                    if (MASK_MODE == 1 && j > i + c.t - c.s) x = -INFINITY;
                    if (MASK_MODE == 2) x = (double)((float)x + mask[((size_t)bi * c.s + i) * c.t + j]);
                    sc[j] = x;
                    mx = x > mx ? x : mx;
                }
                double sum = 0.0;
                for (int j = 0; j < c.t; ++j) {
                    sc[j] = std::exp(sc[j] - mx);
                    sum += sc[j];
                }
                for (int e = 0; e < D; ++e) {
                    double acc = 0.0;
                    for (int j = 0; j < c.t; ++j) {
                        const u16* vr = v.data() + (((size_t)bi * c.nkv + kvh) * c.cap + j) * D;
                        acc += sc[j] * bits_to_f32(vr[e]);
                    }
                    const double want = acc / sum;
                    const float got = bits_to_f32(o[(((size_t)bi * c.s + i) * c.nh + h) * D + e]);
                    if (!std::isfinite(got)) finite = false;
                    err2 += (got - want) * (got - want);
                    ref2 += want * want;
                }
            }
        }
    const double rel = std::sqrt(err2 / (ref2 > 0 ? ref2 : 1.0));
    const double bound = MMA_BF16 ? 1e-2 : 2e-3;
    const bool ok = finite && rel <= bound;
    std::printf("%s %s d=%d mode=%d %-34s rel L2 %.3e (bound %.0e)%s\n", ok ? "ok  " : "FAIL",
                MMA_BF16 ? "bf16" : "f16", D, MASK_MODE, c.name, rel, bound, finite ? "" : " NOT FINITE");
    return ok ? 0 : 1;
}

int main() {
    std::mt19937 rng(1234 + MASK_MODE * 7 + HEAD_DIM);
    // b, nh, nkv, s, t, cap, q permuted, left pad
    const Case cases[] = {
        {"square s=t=77, grouped 4:2", 2, 4, 2, 77, 77, 77, false, 5},
        {"s=t=130, cache cap 150, q permuted", 2, 2, 1, 130, 130, 150, true, 9},
        {"s=40 after 60 cached (t=100)", 2, 2, 2, 40, 100, 128, false, 70},
        {"one tile s=t=64", 2, 1, 1, 64, 64, 64, true, 64},
    };
    int failed = 0;
    for (const Case& c : cases) {
        // Without a mask, queries see every key: the cached prefix cases are the same shapes.
        failed += run_case(c, rng);
    }
    return failed ? 1 : 0;
}
