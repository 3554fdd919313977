// Runs `src/fused/mma_attention.cu` on the CPU: the kernel's own source, with its device primitives (mma.sync,
// shuffles, cp.async, barriers) emulated, checked against attention computed in f64 from the same 16-bit
// inputs. No GPU can check this kernel between device runs; this checks everything but the hardware's fragment
// layouts (taken from the PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type") and its
// rounding.
//
// The primitives are emulated as `emu.h` describes.
//
//   c++ -std=c++20 -O2 -DMMA_BF16=1 -DHEAD_DIM=64 -DMASK_MODE=1 [-DWARPS=8] [-DSTAGES=2] [-DMTILES=2 [-DBC=32]]
//       [-DQV_BIAS=1] mma_attention_emu.cpp -o emu && ./emu
//
// With QV_BIAS the reference adds all three biases (the key's too, which the kernel leaves out) to q, k and v,
// each sum rounded to the dtype as the composition's is.
//
// Prints one line per case and exits 1 if any relative L2 error exceeds the dtype's bound (or a value is not
// finite), 0 otherwise.

#ifndef WARPS
#define WARPS 4
#endif
#define THREADS_EMU (WARPS * 32)
#include "emu.h"

#include "../src/fused/mma_attention.cu"

static MmaParams params;
static void attention_entry() { mmreason_mma_attention(params); }

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
    // Biases of the projections (QV_BIAS): per head and column, as large as the values.
    std::vector<u16> qb((size_t)c.nh * D), kb((size_t)c.nkv * D), vb((size_t)c.nkv * D);
    fill(qb, 1.0f);
    fill(kb, 1.0f);
    fill(vb, 1.0f);
    params.qb = qb.data();
    params.vb = vb.data();
    readable = {{(const unsigned char*)q.data(), q.size() * 2},
                {(const unsigned char*)k.data(), k.size() * 2},
                {(const unsigned char*)v.data(), v.size() * 2}};
    run_grid((c.s + BR - 1) / BR, c.nh, c.b, attention_entry);
    if (QV_BIAS) {
        // What the composition attends over: each projection plus its bias, in the dtype.
        auto add = [](u16& x, u16 bias) { x = f32_to_bits(bits_to_f32(x) + bits_to_f32(bias)); };
        for (int bi = 0; bi < c.b; ++bi)
            for (int h = 0; h < c.nh; ++h)
                for (int i = 0; i < c.s; ++i)
                    for (int e = 0; e < D; ++e) add(q[bi * q_sb + h * q_sh + i * q_ss + e], qb[h * D + e]);
        for (int bi = 0; bi < c.b; ++bi)
            for (int h = 0; h < c.nkv; ++h)
                for (int p = 0; p < c.cap; ++p)
                    for (int e = 0; e < D; ++e) {
                        const size_t i = (((size_t)bi * c.nkv + h) * c.cap + p) * D + e;
                        add(k[i], kb[h * D + e]);
                        add(v[i], vb[h * D + e]);
                    }
    }

    // The reference, in f64 from the same 16-bit inputs.
    double err2 = 0.0, ref2 = 0.0;
    bool finite = true;
    double worst_row = 0.0;
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
                double row_err2 = 0.0, row_ref2 = 0.0;
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
                    row_err2 += (got - want) * (got - want);
                    row_ref2 += want * want;
                }
                const double row_rel = std::sqrt(row_err2 / (row_ref2 > 0 ? row_ref2 : 1.0));
                worst_row = row_rel > worst_row ? row_rel : worst_row;
            }
        }
    const double rel = std::sqrt(err2 / (ref2 > 0 ? ref2 : 1.0));
    const double bound = MMA_BF16 ? 1e-2 : 2e-3;
    // And no row much worse than the whole: a wrong row hides in a large output's average.
    const bool ok = finite && rel <= bound && worst_row <= 3 * bound;
    std::printf("%s %s d=%d mode=%d %-34s rel L2 %.3e, worst row %.3e (bounds %.0e, %.0e)%s\n",
                ok ? "ok  " : "FAIL", MMA_BF16 ? "bf16" : "f16", D, MASK_MODE, c.name, rel, worst_row, bound,
                3 * bound, finite ? "" : " NOT FINITE");
    return ok ? 0 : 1;
}

int main() {
    std::mt19937 rng(1234 + MASK_MODE * 7 + HEAD_DIM);
    // b, nh, nkv, s, t, cap, q permuted, left pad
    const Case cases[] = {
        {"s=t=73 (9 keys last), grouped 4:2", 2, 4, 2, 73, 73, 73, false, 5},
        {"s=t=130, cache cap 150, q permuted", 2, 2, 1, 130, 130, 150, true, 9},
        {"s=40 after 60 cached (t=100)", 2, 2, 2, 40, 100, 128, false, 70},
        {"one tile s=t=64", 2, 1, 1, 64, 64, 64, true, 64},
        {"CLIP's s=t=577 (10 key blocks)", 1, 1, 1, 577, 577, 577, false, 3},
        // A last block of 57 keys (LEAN: a block nearly full is still a partial one), a cache longer than t.
        {"s=t=121 (57 keys last), cap 128", 1, 2, 1, 121, 121, 128, false, 11},
        // Causal blocks at the edge of what a warp sees whole (LEAN): a warp's first diagonal at the block's last
        // key but one (78 cached: 16-row warps; 94: 32-row warps), and exactly at its last key (95).
        {"s=100 after 78 cached (t=178)", 1, 2, 1, 100, 178, 192, false, 0},
        {"s=100 after 94 cached (t=194)", 1, 2, 1, 100, 194, 200, false, 0},
        {"s=100 after 95 cached (t=195)", 1, 2, 1, 100, 195, 200, false, 0},
    };
    int failed = 0;
    for (const Case& c : cases) {
        // Without a mask, queries see every key: the cached prefix cases are the same shapes.
        failed += run_case(c, rng);
    }
    return failed ? 1 : 0;
}
