// The device primitives our CUDA C++ kernels use (`src/fused/*.cu`), emulated on the CPU for the harnesses
// beside this file: each thread of a cube is a user-level context (ucontext) on one OS thread, run in turn until
// it reaches a barrier — a block barrier for __syncthreads, warp barriers inside each warp-level operation
// (every lane deposits its operands, all meet, each computes its own result, all meet again). cp.async copies
// are held back per thread until that thread waits for them, so a read of shared memory before the wait (and
// barrier) that should guard it reads stale data. The includer defines THREADS_EMU (units per cube) and
// MMA_BF16 first, then includes the kernel's source and runs it with `run_grid`.
#pragma once
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <source_location>
#include <vector>

#define MMA_EMULATE 1
typedef uint16_t u16;
typedef uint32_t u32;
typedef long long i64;

#define MMA_DEVICE static inline
#define MMA_KERNEL static void
#define GEMV_KERNEL static void
#define MMA_SHARED alignas(16) static

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
    // Committed groups, oldest first (cp.async.commit_group moves `pending` here).
    std::deque<std::vector<Copy>> groups;
};
static Lane lanes[THREADS_EMU];
static ucontext_t scheduler;
static int current = 0;
static int block_x, block_y, block_z, grid_x;

static void yield_now() { swapcontext(&lanes[current].ctx, &scheduler); }

// Barriers met and threads finished: the scheduler's evidence that the cube is not stuck.
static long progress = 0;

struct Barrier {
    int count = 0, generation = 0, size = 0;
    void wait() {
        const int gen = generation;
        if (++count == size) {
            count = 0;
            ++generation;
            ++progress;
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

// Which warp-level operation each lane has reached: its kind, where in the kernel's source it was called (line and column), and
// how many warp-level operations the lane has done in this cube. Every lane of a warp must meet at the same one
// (mma.sync, ldmatrix and shuffles are `.sync.aligned` or full-mask): a lane-dependent branch around one of them,
// or between two calls of the same kind, fails here instead of pairing mismatched operands.
static int warp_op_count[THREADS_EMU];
static struct {
    const char* kind;
    unsigned line, column;
    int count;
} warp_op_at[THREADS_EMU];
static void warp_op_arrive(const char* kind, const std::source_location& at) {
    warp_op_at[current] = {kind, (unsigned)at.line(), (unsigned)at.column(), warp_op_count[current]++};
}
static void warp_op_check() {
    const int w = current / 32;
    for (int l = 0; l < 32; ++l) {
        const auto& other = warp_op_at[w * 32 + l];
        const auto& mine = warp_op_at[current];
        if (other.kind != mine.kind || other.line != mine.line || other.column != mine.column ||
            other.count != mine.count) {
            std::fprintf(stderr,
                         "warp %d diverged: lane %d is at %s (%u:%u) #%d while lane %d is at %s (%u:%u) #%d (a "
                         "warp-level operation needs every lane)\n",
                         w, current % 32, mine.kind, mine.line, mine.column, mine.count, l, other.kind, other.line,
                         other.column, other.count);
            std::fflush(stdout), std::fflush(stderr), std::_Exit(1);
        }
    }
}

#define MMA_TID current
#define GEMV_TID current
#define GEMV_BLOCK block_x
#define MMA_BLOCK_X block_x
#define MMA_BLOCK_Y block_y
#define MMA_BLOCK_Z block_z
#define MMA_GRID_X grid_x
#define MMA_SYNC() block_barrier.wait()

MMA_DEVICE float neg_inf() { return -INFINITY; }

// The global buffers the kernel may read (the harness registers them): a load outside all of them is an error,
// not a read of whatever the host's memory holds there.
static std::vector<std::pair<const unsigned char*, size_t>> readable;
static void check_read(const void* p, size_t n, const char* what) {
    const unsigned char* b = (const unsigned char*)p;
    for (const auto& [start, len] : readable)
        if (b >= start && b + n <= start + len) return;
    std::fprintf(stderr, "%s reads %zu bytes outside every input buffer\n", what, n);
    std::fflush(stdout), std::fflush(stderr), std::_Exit(1);
}

// The copy's bytes land when the issuing thread waits; until then its destination holds NaN, so a read that
// no wait and barrier order after the copy (this thread's or another's, before or after it was issued) sees
// NaN, on hardware it would see either value.
MMA_DEVICE void cp_async16(void* dst, const void* src, bool valid) {
    if (((uintptr_t)dst & 15) != 0 || (valid && ((uintptr_t)src & 15) != 0)) {
        std::fprintf(stderr, "cp.async of 16 bytes from or to an address not 16-byte aligned\n");
        std::fflush(stdout), std::fflush(stderr), std::_Exit(1);
    }
    if (valid) check_read(src, 16, "cp.async");
    Lane::Copy c;
    c.dst = dst;
    if (valid)
        std::memcpy(c.bytes, src, 16);
    else
        std::memset(c.bytes, 0, 16);
    lanes[current].pending.push_back(c);
    const u16 nan_bits = MMA_BF16 ? 0x7fc0 : 0x7e00;
    for (int i = 0; i < 8; ++i) std::memcpy((unsigned char*)dst + 2 * i, &nan_bits, 2);
}
static void land(std::vector<Lane::Copy>& copies) {
    for (auto& c : copies) std::memcpy(c.dst, c.bytes, 16);
    copies.clear();
}
MMA_DEVICE void cp_async_commit() {
    Lane& ln = lanes[current];
    ln.groups.push_back(std::move(ln.pending));
    ln.pending.clear();
}
// cp.async.wait_all: every copy this thread issued, committed or not.
MMA_DEVICE void cp_async_wait_all() {
    Lane& ln = lanes[current];
    for (auto& g : ln.groups) land(g);
    ln.groups.clear();
    land(ln.pending);
}
// cp.async.wait_group 1: every committed group but the newest (copies not yet committed stay in flight).
MMA_DEVICE void cp_async_wait_one() {
    Lane& ln = lanes[current];
    while (ln.groups.size() > 1) {
        land(ln.groups.front());
        ln.groups.pop_front();
    }
}

MMA_DEVICE float shfl_xor(float v, int m, std::source_location at = std::source_location::current()) {
    const int w = current / 32, l = current % 32;
    scratch[w].v[l] = v;
    warp_op_arrive("shfl_xor", at);
    warp_barrier[w].wait();
    warp_op_check();
    const float r = scratch[w].v[l ^ m];
    warp_barrier[w].wait();
    return r;
}

// A branch condition the kernel requires to be the same in every lane of a warp (what chooses between code with
// different warp-level operations, or the same ones from a different source line): a no-op on the device, here
// a warp operation that fails unless all 32 lanes agree (a lane-dependent `full` would be undefined behaviour
// for mma.sync and ldmatrix on hardware, and the two instantiations of a lambda issue the same operations).
MMA_DEVICE bool warp_uniform(bool v, std::source_location at = std::source_location::current()) {
    const int w = current / 32, l = current % 32;
    scratch[w].v[l] = v ? 1.0f : 0.0f;
    warp_op_arrive("warp_uniform", at);
    warp_barrier[w].wait();
    warp_op_check();
    for (int i = 0; i < 32; ++i)
        if (scratch[w].v[i] != scratch[w].v[0]) {
            std::fprintf(stderr, "warp_uniform at line %u: lanes disagree (lane 0: %d, lane %d: %d)\n",
                         (unsigned)at.line(), scratch[w].v[0] != 0.0f, i, scratch[w].v[i] != 0.0f);
            std::fflush(stdout), std::fflush(stderr), std::_Exit(1);
        }
    warp_barrier[w].wait();
    return v;
}

MMA_DEVICE float exp2_approx(float x) { return std::exp2(x); }

// ldmatrix .m8n8.x4 (.trans) .b16, as the PTX ISA describes it: lane l gives the address of row l % 8 of matrix
// l / 8; in register j, lane l receives row l / 4 of matrix j, columns 2·(l % 4) and the next (lower column in
// the lower half); with .trans, column l / 4 and rows 2·(l % 4) and the next. Rows must be 16-byte aligned.
static void ldsm(u32* r, const u16* row, bool trans, const std::source_location& at) {
    const int w = current / 32, l = current % 32;
    static const u16* rows[THREADS_EMU / 32][32];
    if (((uintptr_t)row & 15) != 0) {
        std::fprintf(stderr, "ldmatrix: a row address not 16-byte aligned\n");
        std::fflush(stdout), std::fflush(stderr), std::_Exit(1);
    }
    rows[w][l] = row;
    warp_op_arrive(trans ? "ldmatrix.trans" : "ldmatrix", at);
    warp_barrier[w].wait();
    warp_op_check();
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
MMA_DEVICE void ldsm_x4(u32* r, const u16* row, std::source_location at = std::source_location::current()) {
    ldsm(r, row, false, at);
}
MMA_DEVICE void ldsm_x4_trans(u32* r, const u16* row, std::source_location at = std::source_location::current()) {
    ldsm(r, row, true, at);
}

MMA_DEVICE u32 pack2(float lo, float hi) { return (u32)f32_to_bits(lo) | ((u32)f32_to_bits(hi) << 16); }

static float half_of(u32 r, int i) { return bits_to_f32((u16)(i ? r >> 16 : r & 0xffff)); }

// The PTX ISA's m16n8k16 fragment layouts: groupID = lane >> 2, threadID_in_group = lane % 4.
MMA_DEVICE void mma16816(float* d, const u32* a, u32 b0, u32 b1,
                         std::source_location at = std::source_location::current()) {
    const int w = current / 32, l = current % 32;
    WarpScratch& s = scratch[w];
    for (int i = 0; i < 4; ++i) s.a[l][i] = a[i];
    s.b[l][0] = b0;
    s.b[l][1] = b1;
    for (int i = 0; i < 4; ++i) s.c[l][i] = d[i];
    warp_op_arrive("mma.sync", at);
    warp_barrier[w].wait();
    warp_op_check();
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


// ---- 16-byte global loads and conversions (the product kernel) ------------------------------------------------
struct Vec4 {
    u32 x, y, z, w;
};
MMA_DEVICE Vec4 load_stream(const u16* p) {
    if (((uintptr_t)p & 15) != 0) {
        std::fprintf(stderr, "a 16-byte load from an address not 16-byte aligned\n");
        std::fflush(stdout), std::fflush(stderr), std::_Exit(1);
    }
    check_read(p, 16, "a 16-byte load");
    Vec4 v;
    std::memcpy(&v, p, 16);
    return v;
}
MMA_DEVICE Vec4 load_cached(const u16* p) { return load_stream(p); }
MMA_DEVICE void halves(u32 r, float& lo, float& hi) {
    lo = bits_to_f32((u16)(r & 0xffff));
    hi = bits_to_f32((u16)(r >> 16));
}
MMA_DEVICE u16 to_bits(float f) { return f32_to_bits(f); }

// ---- running a grid ------------------------------------------------------------------------------------------
static std::mt19937 schedule_rng(7);
static void (*lane_entry)();

static void lane_main() {
    lane_entry();
    lanes[current].done = true;
}

// Runs `entry` (which calls the kernel with the harness's parameters) for every cube of a gx × gy × gz grid, one
// cube at a time.
static void run_grid(int gx, int gy, int gz, void (*entry)()) {
    lane_entry = entry;
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
                    ln.groups.clear();
                    warp_op_count[i] = 0;
                    ln.stack.assign(256 * 1024, 0);
                    getcontext(&ln.ctx);
                    ln.ctx.uc_stack.ss_sp = ln.stack.data();
                    ln.ctx.uc_stack.ss_size = ln.stack.size();
                    ln.ctx.uc_link = &scheduler;
                    makecontext(&ln.ctx, lane_main, 0);
                }
                // Each round runs a random subset of the warps (every lane of a chosen warp, to its next
                // yield), so warps drift apart between barriers as they do on hardware; a hazard that only
                // lock-step would hide shows. Many rounds with no barrier met and no thread finished: stuck.
                bool left = true;
                int idle = 0;
                while (left) {
                    left = false;
                    const long before = progress;
                    bool ran = false;
                    for (int w = 0; w < THREADS_EMU / 32; ++w) {
                        const bool run = !ran && w == THREADS_EMU / 32 - 1 ? true : (schedule_rng() & 1) != 0;
                        for (int l = 0; l < 32; ++l) {
                            current = w * 32 + l;
                            if (lanes[current].done) continue;
                            left = true;
                            if (!run) continue;
                            ran = true;
                            swapcontext(&scheduler, &lanes[current].ctx);
                            if (lanes[current].done) ++progress;
                        }
                    }
                    idle = progress == before ? idle + 1 : 0;
                    if (idle > 10000) {
                        std::fprintf(stderr, "the cube is stuck: a thread waits at a barrier others never reach\n");
                        std::fflush(stdout), std::fflush(stderr), std::_Exit(1);
                    }
                }
                for (auto& ln : lanes) {
                    bool unwaited = !ln.pending.empty();
                    for (const auto& g : ln.groups) unwaited = unwaited || !g.empty();
                    if (unwaited) {
                        std::fprintf(stderr, "a thread ended with cp.async copies it never waited for\n");
                        std::fflush(stdout), std::fflush(stderr), std::_Exit(1);
                    }
                }
            }
}
