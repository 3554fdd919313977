// Prefill attention on tensor cores with the scores, probabilities and output kept in registers
// (FlashAttention-2's forward pass): softmax(q·kᵀ·scale [+ mask])·v for one (sequence, query head, 64 or 128
// query rows) per cube of 4 or 8 warps, each warp owning 16 rows (or 32: MTILES). Compiled at run time with NVRTC (`fused::mma`);
// the host emulator (`crates/model/emulate/`) runs this same file on the CPU with the warp-level operations
// emulated.
//
// What the includer defines first:
//   MMA_BF16   1: bf16 operands, 0: f16
//   HEAD_DIM   64 or 128
//   MASK_MODE  0: no mask; 1: causal (query i sees keys up to i + t − s); 2: an additive f32 mask [b, 1, s, t]
//   WARPS      (optional) 4 (default) or 8 warps per cube; MIN_CUBES (optional) the register budget
//   MTILES     (optional) 1 (default): 16 query rows (one m16 tile) per warp; 2 (heads of 64, or 128 with BC
//              32): 32, so that each K and V fragment loaded from shared memory serves two m-tiles' products
//              instead of one — half the ldmatrix traffic per query row, as FlashAttention-2 lays its warps out
//   BC         (optional) keys per block: 64 (default), or 32
//   QV_BIAS    (optional) 1: the projections' biases folded in (`qb` added to Q's tile before its fragments are
//              taken, rounded to the dtype once as the composition's sum is; `vb` added to the output, exact
//              as the probabilities of a row sum to 1; the key bias left out, exact as it adds q·bk to every
//              score of a row, which the softmax takes back) — so that the vision tower's attention reads q,
//              k and v as views of its one projection, with no pass of its own for the bias and the split
//   STAGES     (optional) 1 (default): one K and one V tile in shared memory, each tile's copy overlapping half
//              a block's work; 2 (heads of 64 only, static shared memory): two of each, block j + 2's copies
//              issued once block j is done, so each overlaps a whole block's work
// after `cuda_prelude.cuh` (types, MMA_DEVICE, shfl_xor); in the emulator, MMA_EMULATE with the primitives
// below defined by the harness instead.
//
// Layout: operands are 16-bit values with the head dimension contiguous and rows 16-byte aligned; every other
// stride is a parameter (a cache holding more positions than `t`, a permuted view). Keys and values of
// kv head `h / group` serve query head `h` (grouped-query attention without repeating them).
//
// Per key block of 64 (BC; or 32): S = Q·Kᵀ with mma.sync m16n8k16 (Q's fragments loaded once into registers, K's
// by ldmatrix: a key row is a column of Kᵀ, contiguous); the online softmax on
// S's accumulators (a row's values sit in the 4 lanes of a quad: two butterfly shuffles); P packed to 16 bits
// straight from S's accumulators into the A operand of the second product (the m16n8 accumulator layout of two
// adjacent n-tiles is the m16k16 A layout); O += P·V with V's B operands transposed by ldmatrix. K and V
// tiles arrive with cp.async (zero-filled past the end), the next tile's copy overlapping this tile's work.
//
// Each warp skips the keys none of its rows can see: the n-tiles past `t` in the last block (CLIP's 577 = 9·64 + 1
// positions), past its last row's diagonal in causal blocks, and every key when all its rows are past `s`. The
// conditions are the same for every lane of a warp (mma.sync and ldmatrix need the whole warp); every thread still
// issues its share of the cube's copies and meets every barrier.

// Warps per cube (4 or 8), each owning WROWS query rows (MTILES m16 tiles): BR rows per cube share each K/V tile.
#ifndef WARPS
#define WARPS 4
#endif
#ifndef MTILES
#define MTILES 1
#endif
#define WROWS (16 * MTILES)
#define BR (WARPS * WROWS)
// Keys per block: 64, or 32 (the scores of two m-tiles at heads of 128 in fewer registers).
#ifndef BC
#define BC 64
#endif
#if BC != 64 && BC != 32
#error "BC is 64 or 32"
#endif
#define THREADS (WARPS * 32)
// Shared rows padded by 8 values (16 bytes): the 8 rows a fragment load touches fall in different banks.
#define LDS (HEAD_DIM + 8)
#define CHUNKS_PER_ROW (HEAD_DIM / 8)
// Cubes per SM the registers are budgeted for (65,536 per SM: 4 cubes of 128 units leave 128 registers per
// unit, 2 leave 255). NVRTC 13.5 for sm_90a: heads of 64 fit in 128 without a mask and spill at 3 cubes with
// one; heads of 128 take 196–236 and spill at 3. Two m-tiles per warp double the scores, the output and Q's
// fragments (≈ 160 values per unit at heads of 64): 2 cubes (226–249 registers at heads of 64; 255 with 44–72
// bytes spilled at heads of 128 with key blocks of 32).
#ifndef MIN_CUBES
#define MIN_CUBES ((HEAD_DIM == 64 && MASK_MODE != 2 && MTILES == 1 ? 4 : 2) * 4 / WARPS)
#endif
#if MTILES != 1 && !(MTILES == 2 && (HEAD_DIM == 64 || BC == 32))
#error "MTILES is 1, or 2 at heads of 64 or with blocks of 32 keys (at heads of 128, two m-tiles' output alone takes 128 registers per unit)"
#endif
#ifndef STAGES
#define STAGES 1
#endif
#ifndef QV_BIAS
#define QV_BIAS 0
#endif
#if STAGES != 1 && !(STAGES == 2 && HEAD_DIM == 64)
#error "STAGES is 1, or 2 at heads of 64 (two stages of 128-wide tiles pass static shared memory's 48 KiB)"
#endif
#ifndef LEAN
#define LEAN 0
#endif
// Shared rows: the K/V tiles', or Q's tile if it is taller (staged there before the first key block).
#define SMEM_ROWS (BR > 2 * BC * STAGES ? BR : 2 * BC * STAGES)

#ifndef MMA_EMULATE
MMA_DEVICE float neg_inf() { return __int_as_float(0xff800000); }

#if LEAN
// The compiler's own conversion (not an asm block), so that the offsets of a fragment's row from a base fold into
// the instructions' immediate offsets instead of an address computed per load.
MMA_DEVICE u32 shared_address(const void* p) { return (u32)__cvta_generic_to_shared(p); }
#else
MMA_DEVICE u32 shared_address(const void* p) {
    u32 a;
    asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}
#endif

// 16 bytes from global to shared memory without passing through registers; `valid` false writes zeros.
MMA_DEVICE void cp_async16(void* dst, const void* src, bool valid) {
    int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(shared_address(dst)), "l"(src), "r"(bytes)
                 : "memory");
}
MMA_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
MMA_DEVICE void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }
// Every committed group but the newest has landed (this thread's copies).
MMA_DEVICE void cp_async_wait_one() { asm volatile("cp.async.wait_group 1;" ::: "memory"); }

// A condition every lane of the warp computes alike (the emulator checks that it is).
MMA_DEVICE bool warp_uniform(bool v) { return v; }

MMA_DEVICE float exp2_approx(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// Two f32 to two 16-bit floats in one register, `lo` in the lower half (round to nearest even).
MMA_DEVICE u32 pack2(float lo, float hi) {
    u32 r;
#if MMA_BF16
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
    return r;
}

// Four 8×8 matrices of 16-bit values from shared memory, lane l giving the address of row l % 8 of matrix l / 8:
// register j holds row l / 4 of matrix j, columns 2·(l % 4) and the next (`trans`: column l / 4, rows 2·(l % 4)
// and the next) — the m16n8k16 B operand of a row-major tile (`trans`: of its transpose).
MMA_DEVICE void ldsm_x4(u32* r, const u16* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
}
MMA_DEVICE void ldsm_x4_trans(u32* r, const u16* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
}

// d = a·b + d: A 16×16 (4 registers), B 16×8 (2), C/D 16×8 f32 (4), in the PTX ISA's fragment layouts.
MMA_DEVICE void mma16816(float* d, const u32* a, u32 b0, u32 b1) {
#if MMA_BF16
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

#define MMA_SYNC() __syncthreads()
#define MMA_KERNEL extern "C" __global__ void __launch_bounds__(THREADS, MIN_CUBES)
#define MMA_SHARED __shared__ __align__(16)
#define MMA_TID ((int)threadIdx.x)
#define MMA_BLOCK_X ((int)blockIdx.x)
#define MMA_BLOCK_Y ((int)blockIdx.y)
#define MMA_BLOCK_Z ((int)blockIdx.z)
#define MMA_GRID_X ((int)gridDim.x)
#endif

// The kernel's parameters, one struct (`fused::mma::Params` mirrors it field for field, `#[repr(C)]`). Strides
// are in elements; the head dimension's is 1.
struct MmaParams {
    const u16* q;
    const u16* k;
    const u16* v;
    u16* o;
    const float* mask;
    i64 q_sb, q_sh, q_ss;
    i64 k_sb, k_sh, k_ss;
    i64 v_sb, v_sh, v_ss;
    i64 o_sb, o_sh, o_ss;
    i64 m_sb, m_ss;
    int s, t, group, pad;
    float scale;
    // QV_BIAS: the query and value biases, `[heads · d]` and `[kv heads · d]` (else unused).
    const u16* qb;
    const u16* vb;
};

// Rows row0.. of a tile of `ROWS` rows (row stride `stride` elements in global memory) into `dst` (LDS per row);
// rows at or past `end` are zeros, so values there cannot put NaN into the products.
template <int ROWS>
MMA_DEVICE void load_tile(u16* dst, const u16* src, i64 stride, int row0, int end, int tid) {
#if LEAN
    // A fixed count of copies per thread (the tile's chunks are a multiple of the cube's threads), so the loop
    // unrolls whole: the thread's column and first row once, then one pointer step per copy (no 64-bit product
    // per copy).
    static_assert(ROWS * CHUNKS_PER_ROW % THREADS == 0, "a tile's chunks are a multiple of the threads");
    constexpr int ROW_STEP = THREADS / CHUNKS_PER_ROW;
    const int col = (tid % CHUNKS_PER_ROW) * 8;
    const int r0 = tid / CHUNKS_PER_ROW;
    const u16* from = src + (i64)(row0 + r0) * stride + col;
    const i64 step = ROW_STEP * stride;
    u16* to = dst + r0 * LDS + col;
#pragma unroll
    for (int i = 0; i < ROWS * CHUNKS_PER_ROW / THREADS; ++i) {
        const bool valid = row0 + r0 + i * ROW_STEP < end;
        cp_async16(to + i * ROW_STEP * LDS, valid ? from : src, valid);
        from += step;
    }
#else
#pragma unroll
    for (int c = tid; c < ROWS * CHUNKS_PER_ROW; c += THREADS) {
        const int r = c / CHUNKS_PER_ROW;
        const int col = (c % CHUNKS_PER_ROW) * 8;
        const bool valid = row0 + r < end;
        const u16* from = valid ? src + (i64)(row0 + r) * stride + col : src;
        cp_async16(dst + r * LDS + col, from, valid);
    }
#endif
}

MMA_DEVICE u32 lds32(const u16* p) { return *(const u32*)p; }

// A compile-time flag as a value, for the generic lambdas that run a key block with or without its conditions.
template <bool V>
struct Flag {
    static constexpr bool value = V;
};

// What the online softmax keeps of a score `s` (the running maximum is of these), and the exponential of a kept
// value against the row's maximum `base`, with `c2` the factor to base-2 units. LEAN 0: the scaled score (plus
// the mask), exponentials of (x − base)·log₂e — three operations and the exponential per score. LEAN 1, unmasked:
// the raw score (the scale is positive, so the maximum is the same key's) and c2 = scale·log₂e, so that each
// probability is one FMA and the exponential (FlashAttention-2's arrangement); masked: the score times the scale
// plus the mask in one FMA, the exponentials as with LEAN 0. The same function of the scores, rounded differently
// in f32 before the probabilities are rounded to 16 bits.
#if LEAN
MMA_DEVICE float keep(float s, float scale) { return MASK_MODE == 2 ? s * scale : s; }
MMA_DEVICE float keep_masked(float s, float scale, float mask) { return fmaf(s, scale, mask); }
MMA_DEVICE float exp_kept(float x, float base, float c2) {
    // Masked, a row's maximum may be near f32::MIN (masked throughout): −base·c2 would overflow, so the
    // difference comes first there.
    return MASK_MODE == 2 ? exp2_approx((x - base) * c2) : exp2_approx(fmaf(x, c2, -base * c2));
}
#else
MMA_DEVICE float keep(float s, float scale) { return s * scale; }
MMA_DEVICE float keep_masked(float s, float scale, float mask) { return s * scale + mask; }
MMA_DEVICE float exp_kept(float x, float base, float c2) { return exp2_approx((x - base) * c2); }
#endif

MMA_KERNEL mmreason_mma_attention(MmaParams p) {
    // K's tile, then V's (per stage); Q's tile is staged across them before the first key block.
    MMA_SHARED u16 smem[SMEM_ROWS * LDS];
    u16* const ks = smem;
    u16* const vs = smem + BC * LDS;
    const int tid = MMA_TID;
    const int warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;
    // Causal: the last query tiles have the most keys; launched first, they do not end the grid alone.
    const int qt = MASK_MODE == 1 ? MMA_GRID_X - 1 - MMA_BLOCK_X : MMA_BLOCK_X;
    const int h = MMA_BLOCK_Y, b = MMA_BLOCK_Z;
    const int kvh = h / p.group;
    const int q0 = qt * BR;
    const u16* qg = p.q + b * p.q_sb + h * p.q_sh;
    const u16* kg = p.k + b * p.k_sb + kvh * p.k_sh;
    const u16* vg = p.v + b * p.v_sb + kvh * p.v_sh;
    const float NEG_INF = neg_inf();
    const float LOG2E = 1.4426950408889634f;
    // Kept values to base-2 units (`keep`).
    const float c2 = LEAN && MASK_MODE != 2 ? p.scale * LOG2E : LOG2E;

    // The keys this tile reads: all `t`, or causally up to what its last row sees.
    int kv_end = p.t;
    if (MASK_MODE == 1) {
        const int last = (q0 + BR < p.s ? q0 + BR : p.s) + p.t - p.s;
        kv_end = last < p.t ? last : p.t;
    }
    const int blocks = (kv_end + BC - 1) / BC;

    // Q's tile through shared memory, into registers for the whole kernel: WROWS contiguous rows per warp, m-tile
    // m's lane rows at r0 + 16·m and r0 + 16·m + 8.
    load_tile<BR>(smem, qg, p.q_ss, q0, p.s, tid);
    cp_async_commit();
    cp_async_wait_all();
    MMA_SYNC();
#if QV_BIAS
    // q + bias in place, two values per step (rows past `s` too: they are never written out).
    for (int c = tid; c < BR * HEAD_DIM / 2; c += THREADS) {
        const int r = c / (HEAD_DIM / 2);
        const int col = (c % (HEAD_DIM / 2)) * 2;
        u32* at = (u32*)(smem + r * LDS + col);
        float lo, hi, blo, bhi;
        halves(*at, lo, hi);
        halves(*(const u32*)(p.qb + h * HEAD_DIM + col), blo, bhi);
        *at = pack2(lo + blo, hi + bhi);
    }
    MMA_SYNC();
#endif
    const int w0 = warp * WROWS;
    const int r0 = w0 + g;
    u32 qf[MTILES][HEAD_DIM / 16][4];
#pragma unroll
    for (int m = 0; m < MTILES; ++m) {
        const int r = r0 + 16 * m;
#pragma unroll
        for (int kk = 0; kk < HEAD_DIM / 16; ++kk) {
            qf[m][kk][0] = lds32(smem + r * LDS + kk * 16 + 2 * tq);
            qf[m][kk][1] = lds32(smem + (r + 8) * LDS + kk * 16 + 2 * tq);
            qf[m][kk][2] = lds32(smem + r * LDS + kk * 16 + 8 + 2 * tq);
            qf[m][kk][3] = lds32(smem + (r + 8) * LDS + kk * 16 + 8 + 2 * tq);
        }
    }
    MMA_SYNC();

    float o[MTILES][HEAD_DIM / 8][4];
#pragma unroll
    for (int m = 0; m < MTILES; ++m) {
#pragma unroll
        for (int n = 0; n < HEAD_DIM / 8; ++n) {
            o[m][n][0] = o[m][n][1] = o[m][n][2] = o[m][n][3] = 0.0f;
        }
    }
    // Per row of this lane (r0 + 16·m and r0 + 16·m + 8): the running maximum, and this lane's part of the
    // running sum (the quad's four parts are added at the end; they are rescaled alike, as the maximum is the
    // quad's).
    float mrow[MTILES][2], lrow[MTILES][2];
    // Rows past `s` read the mask's last row (their results are not written).
    int qi[MTILES][2];
#pragma unroll
    for (int m = 0; m < MTILES; ++m) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            mrow[m][r] = NEG_INF;
            lrow[m][r] = 0.0f;
            const int i = q0 + r0 + 16 * m + 8 * r;
            qi[m][r] = i < p.s ? i : p.s - 1;
        }
    }
    // The end of the keys this warp's rows see (the same in every lane): none when every row is past `s`;
    // causally, what its last row sees.
    int warp_end = q0 + w0 < p.s ? kv_end : 0;
    if (MASK_MODE == 1 && warp_end > 0) {
        const int last = (q0 + w0 + WROWS < p.s ? q0 + w0 + WROWS : p.s) + p.t - p.s;
        warp_end = last < kv_end ? last : kv_end;
    }

#if STAGES == 2
    // Blocks 0 and 1, one commit group each (the second empty with one block): at the top of block j, group j
    // is the oldest still in flight and exactly one newer group has been committed.
    for (int j = 0; j < 2; ++j) {
        if (j < blocks) {
            load_tile<BC>(smem + j * 2 * BC * LDS, kg, p.k_ss, j * BC, kv_end, tid);
            load_tile<BC>(smem + j * 2 * BC * LDS + BC * LDS, vg, p.v_ss, j * BC, kv_end, tid);
        }
        cp_async_commit();
    }
#else
    load_tile<BC>(ks, kg, p.k_ss, 0, kv_end, tid);
    cp_async_commit();
#endif
    for (int j = 0; j < blocks; ++j) {
        const int k0 = j * BC;
#if STAGES == 2
        u16* const ks = smem + (j & 1) * 2 * BC * LDS;
        u16* const vs = ks + BC * LDS;
        // K_j and V_j have arrived (every thread's copies: the barrier after each thread's wait).
        cp_async_wait_one();
        MMA_SYNC();
#else
        // K_j has arrived, and every warp is done with V_{j-1}: V_j may overwrite it.
        cp_async_wait_all();
        MMA_SYNC();
        load_tile<BC>(vs, vg, p.v_ss, k0, kv_end, tid);
        cp_async_commit();
#endif
        // Keys of this block the warp's rows see: n-tiles at or past `seen` are skipped (warp-uniform).
        const int seen = warp_end - k0;
        // LEAN: every row of the warp sees every key of this block (no key past `t` or past a row's
        // diagonal), so its products and softmax need no per-tile or per-key condition — straight-line code
        // that ptxas can schedule as one piece (each `ldmatrix` issued ahead of the products that wait for it,
        // where a branch per n-tile leaves its latency exposed). Warp-uniform.
        const bool full =
            LEAN && warp_uniform(seen >= BC && (MASK_MODE != 1 || k0 + BC - 1 <= q0 + w0 + p.t - p.s));

        float sc[MTILES][BC / 8][4];
#pragma unroll
        for (int m = 0; m < MTILES; ++m) {
#pragma unroll
            for (int n = 0; n < BC / 8; ++n) {
                sc[m][n][0] = sc[m][n][1] = sc[m][n][2] = sc[m][n][3] = 0.0f;
            }
        }
        // The products and the softmax of this block; `FULL` (a compile-time flag) drops every condition.
        auto scores = [&](auto flag) {
            constexpr bool FULL = decltype(flag)::value;
            // K's B operands, two n-tiles of keys per ldmatrix: matrices (keys n·16 + 0..7 | + 8..15) × (head
            // columns kk·16 + 0..7 | + 8..15), as lane / 8 = key half · 2 + column half. Each serves every
            // m-tile.
            const u16* krow = ks + (((lane >> 4) & 1) * 8 + (lane & 7)) * LDS + ((lane >> 3) & 1) * 8;
#pragma unroll
            for (int kk = 0; kk < HEAD_DIM / 16; ++kk) {
#pragma unroll
                for (int n = 0; n < BC / 16; ++n) {
                    if (FULL || n * 16 < seen) {
                        u32 kb[4];
                        ldsm_x4(kb, krow + n * 16 * LDS + kk * 16);
#pragma unroll
                        for (int m = 0; m < MTILES; ++m) {
                            mma16816(sc[m][2 * n], qf[m][kk], kb[0], kb[1]);
                            if (FULL || n * 16 + 8 < seen) {
                                mma16816(sc[m][2 * n + 1], qf[m][kk], kb[2], kb[3]);
                            }
                        }
                    }
                }
            }

            // The values the softmax keeps (`keep`), masked keys at −∞ (an additive mask of f32::MIN stays
            // finite, as in eager attention, so a row masked throughout comes out uniform as there);
            // exponentials in base 2 (`exp_kept`).
#pragma unroll
            for (int m = 0; m < MTILES; ++m) {
                float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
                for (int n = 0; n < BC / 8; ++n) {
                    if (!FULL && n * 8 >= seen) {
                        continue;
                    }
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int half = e >> 1;
                        const int key = k0 + n * 8 + 2 * tq + (e & 1);
                        float x = keep(sc[m][n][e], p.scale);
                        bool ok = FULL || key < kv_end;
                        if (MASK_MODE == 1 && !FULL) {
                            ok = ok && key <= q0 + r0 + 16 * m + 8 * half + p.t - p.s;
                        }
                        if (MASK_MODE == 2) {
                            if (ok) {
                                x = keep_masked(sc[m][n][e], p.scale,
                                                p.mask[b * p.m_sb + (i64)qi[m][half] * p.m_ss + key]);
                            }
                        }
                        x = ok ? x : NEG_INF;
                        sc[m][n][e] = x;
                        // LEAN: one FMNMX (a NaN score still reaches the output through its exponential).
                        mx[half] = LEAN ? fmaxf(x, mx[half]) : x > mx[half] ? x : mx[half];
                    }
                }
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    float mq = mx[r];
                    float o1 = shfl_xor(mq, 1);
                    mq = o1 > mq ? o1 : mq;
                    float o2 = shfl_xor(mq, 2);
                    mq = o2 > mq ? o2 : mq;
                    const float mnew = mq > mrow[m][r] ? mq : mrow[m][r];
                    // A row that has seen no key yet keeps −∞; its exponentials are then taken against 0.
                    const float base = mnew == NEG_INF ? 0.0f : mnew;
                    const float alpha = exp_kept(mrow[m][r], base, c2);
                    mrow[m][r] = mnew;
                    lrow[m][r] *= alpha;
#pragma unroll
                    for (int n = 0; n < HEAD_DIM / 8; ++n) {
                        o[m][n][2 * r] *= alpha;
                        o[m][n][2 * r + 1] *= alpha;
                    }
                    float sum = 0.0f;
#pragma unroll
                    for (int n = 0; n < BC / 8; ++n) {
                        // Unseen n-tiles hold zeros (never multiplied); their probabilities stay 0.
                        if (FULL || n * 8 < seen) {
                            const float p0 = exp_kept(sc[m][n][2 * r], base, c2);
                            const float p1 = exp_kept(sc[m][n][2 * r + 1], base, c2);
                            sc[m][n][2 * r] = p0;
                            sc[m][n][2 * r + 1] = p1;
                            sum += p0 + p1;
                        }
                    }
                    lrow[m][r] += sum;
                }
            }
        };
        if (full) {
            scores(Flag<true>());
        } else if (seen > 0) {
            scores(Flag<false>());
        }

#if STAGES != 2
        // V_j has arrived, and every warp is done with K_j: K_{j+1} may overwrite it.
        cp_async_wait_all();
        MMA_SYNC();
        if (j + 1 < blocks) {
            load_tile<BC>(ks, kg, p.k_ss, k0 + BC, kv_end, tid);
        }
        cp_async_commit();
#endif

        // V's B operands, transposed by ldmatrix: matrices (keys kk·16 + 0..7 | + 8..15) × (head columns n·16 +
        // 0..7 | + 8..15), as lane / 8 = column half · 2 + key half. Each serves every m-tile.
        auto values = [&](auto flag) {
            constexpr bool FULL = decltype(flag)::value;
            const u16* vrow = vs + (((lane >> 3) & 1) * 8 + (lane & 7)) * LDS + ((lane >> 4) & 1) * 8;
#pragma unroll
            for (int kk = 0; kk < BC / 16; ++kk) {
                if (!FULL && kk * 16 >= seen) {
                    continue;
                }
                u32 a[MTILES][4];
#pragma unroll
                for (int m = 0; m < MTILES; ++m) {
                    a[m][0] = pack2(sc[m][2 * kk][0], sc[m][2 * kk][1]);
                    a[m][1] = pack2(sc[m][2 * kk][2], sc[m][2 * kk][3]);
                    a[m][2] = pack2(sc[m][2 * kk + 1][0], sc[m][2 * kk + 1][1]);
                    a[m][3] = pack2(sc[m][2 * kk + 1][2], sc[m][2 * kk + 1][3]);
                }
#pragma unroll
                for (int n = 0; n < HEAD_DIM / 16; ++n) {
                    u32 vb[4];
                    ldsm_x4_trans(vb, vrow + kk * 16 * LDS + n * 16);
#pragma unroll
                    for (int m = 0; m < MTILES; ++m) {
                        mma16816(o[m][2 * n], a[m], vb[0], vb[1]);
                        mma16816(o[m][2 * n + 1], a[m], vb[2], vb[3]);
                    }
                }
            }
        };
        if (full) {
            values(Flag<true>());
        } else {
            values(Flag<false>());
        }
#if STAGES == 2
        // Every warp is done with this stage's K and V: block j + 2's copies may overwrite them (a group is
        // committed either way, empty past the last block).
        MMA_SYNC();
        if (j + 2 < blocks) {
            load_tile<BC>(ks, kg, p.k_ss, k0 + 2 * BC, kv_end, tid);
            load_tile<BC>(vs, vg, p.v_ss, k0 + 2 * BC, kv_end, tid);
        }
        cp_async_commit();
#endif
    }

    // O / l, written as [b, s, head, d] or however the strides say.
#pragma unroll
    for (int m = 0; m < MTILES; ++m) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = lrow[m][r];
            l += shfl_xor(l, 1);
            l += shfl_xor(l, 2);
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            const int i = q0 + r0 + 16 * m + 8 * r;
            if (i < p.s) {
                u16* out = p.o + b * p.o_sb + h * p.o_sh + (i64)i * p.o_ss + 2 * tq;
#pragma unroll
                for (int n = 0; n < HEAD_DIM / 8; ++n) {
                    float lo = o[m][n][2 * r] * inv, hi = o[m][n][2 * r + 1] * inv;
#if QV_BIAS
                    float blo, bhi;
                    halves(*(const u32*)(p.vb + kvh * HEAD_DIM + n * 8 + 2 * tq), blo, bhi);
                    lo += blo;
                    hi += bhi;
#endif
                    *(u32*)(out + n * 8) = pack2(lo, hi);
                }
            }
        }
    }
}
