// Runs `src/fused/gemv.cu` (the few-row product of `MMREASON_GEMV=cuda`) on the CPU with its device primitives
// emulated as `emu.h` describes, against the product in f64 from the same 16-bit inputs: 1, 3 and 4 rows of x;
// column counts that are not whole cubes; depths that are not whole stretches of loads (and one shorter than a
// stretch); row strides wider than the rows (a view), and NaN in the padding past each row, which must not
// be read.
//
//   c++ -std=c++20 -O2 -DMMA_BF16=1 -DUNROLL=8 gemv_emu.cpp -o emu && ./emu
//
// Prints one line per case and exits 1 if any relative L2 error exceeds the dtype's bound, a value is not
// finite, or an output outside the product was written; 0 otherwise.

#define THREADS_EMU 256
#include "emu.h"

#include "../src/fused/gemv.cu"

static GemvParams params;
static void gemv_entry() { mmreason_gemv(params); }

struct Case {
    const char* name;
    int m, n, k, pad;  // pad: extra elements per row of x and w (NaN)
};

static int run_case(const Case& c, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const u16 nan_bits = MMA_BF16 ? 0x7fc0 : 0x7e00;
    const int xs = c.k + c.pad, ws = c.k + c.pad, ys = c.n + 3;
    std::vector<u16> x((size_t)c.m * xs, nan_bits), w((size_t)c.n * ws, nan_bits);
    for (int r = 0; r < c.m; ++r)
        for (int i = 0; i < c.k; ++i) x[(size_t)r * xs + i] = f32_to_bits(normal(rng));
    for (int j = 0; j < c.n; ++j)
        for (int i = 0; i < c.k; ++i) w[(size_t)j * ws + i] = f32_to_bits(normal(rng) * 0.05f);
    // Output rows `ys` apart; the gaps and a row past m hold a sentinel that must survive.
    const u16 sentinel = 0x1234;
    std::vector<u16> y((size_t)(c.m + 1) * ys, sentinel);
    params = GemvParams{};
    params.x = x.data();
    params.w = w.data();
    params.y = y.data();
    params.x_stride = xs, params.w_stride = ws, params.y_stride = ys;
    params.m = c.m, params.n = c.n, params.k = c.k;
    readable = {{(const unsigned char*)x.data(), x.size() * 2}, {(const unsigned char*)w.data(), w.size() * 2}};
    run_grid((c.n + GEMV_WARPS - 1) / GEMV_WARPS, 1, 1, gemv_entry);

    double err2 = 0.0, ref2 = 0.0;
    bool finite = true, untouched = true;
    for (int r = 0; r <= c.m; ++r)
        for (int j = 0; j < ys; ++j) {
            const u16 got_bits = y[(size_t)r * ys + j];
            if (r == c.m || j >= c.n) {
                untouched = untouched && got_bits == sentinel;
                continue;
            }
            double want = 0.0;
            for (int i = 0; i < c.k; ++i)
                want += (double)bits_to_f32(x[(size_t)r * xs + i]) * bits_to_f32(w[(size_t)j * ws + i]);
            const float got = bits_to_f32(got_bits);
            if (!std::isfinite(got)) finite = false;
            err2 += (got - want) * (got - want);
            ref2 += want * want;
        }
    const double rel = std::sqrt(err2 / (ref2 > 0 ? ref2 : 1.0));
    const double bound = MMA_BF16 ? 5e-3 : 1e-3;
    const bool ok = finite && untouched && rel <= bound;
    std::printf("%s %s unroll=%d %-40s rel L2 %.3e (bound %.0e)%s%s\n", ok ? "ok  " : "FAIL",
                MMA_BF16 ? "bf16" : "f16", UNROLL, c.name, rel, bound, finite ? "" : " NOT FINITE",
                untouched ? "" : " WROTE OUTSIDE");
    return ok ? 0 : 1;
}

int main() {
    std::mt19937 rng(99 + UNROLL);
    const Case cases[] = {
        {"m=1 n=37 k=4104 (not whole stretches)", 1, 37, 4104, 0},
        {"m=3 n=16 k=64 (shorter than a stretch)", 3, 16, 64, 8},
        {"m=4 n=9 k=2048, rows padded by 24", 4, 9, 2048, 24},
        {"m=2 n=8 k=8", 2, 8, 8, 0},
    };
    int failed = 0;
    for (const Case& c : cases) failed += run_case(c, rng);
    return failed ? 1 : 0;
}
