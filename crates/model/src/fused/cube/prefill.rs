//! Prefill attention as one kernel of ours (`MMREASON_ATTENTION=own`): `softmax(q·kᵀ·scale + mask)·v` for a
//! tile of query rows per cube, keys and values taken a block at a time with a running maximum and sum
//! (FlashAttention-2's online softmax), so the score matrix never goes to memory and neither product goes
//! through cuBLAS.
//!
//! Why our own: the composed attention is two cuBLAS products around the softmax kernel, and on CUDA each
//! cuBLAS call is ordered with burn's stream through the host (36–51 µs per product on the H100 of run 7, two
//! per layer) while the softmax writes and reads the whole score matrix (0.93 ms per layer of a 7B prefill in
//! run 6). cubek 0.2's flash attention, tried first, refuses Mistral's bf16 prefill and runs CLIP at 0.8× the
//! composition (run 7), and takes no mask, no grouped heads and no cache.
//!
//! The tile products run on tensor cores (`cmma`, 16×16×16 fragments, f32 accumulators) where the device has
//! them for the dtype (CUDA: bf16, f16), and as plain multiply-adds over the same shared-memory tiles
//! elsewhere (f32, wgpu): both read and write the tiles with the same offsets and strides, so CI's runs of the
//! second on lavapipe check every index the first uses; only the fragment calls themselves are left to a
//! device.
//!
//! Numerics: scores and the softmax in f32, as transformers' eager attention; the probabilities are rounded to
//! the dtype before their product with the values, unnormalised (FlashAttention's order: the division by the
//! row's sum comes last, in f32), where the composition rounds them normalised — a difference within the
//! dtype's rounding.

use super::*;
use crate::fused::AttentionShape;
use cubecl::cmma;

/// Query rows per plane: the tensor-core fragment's height.
const TILE: usize = 16;
/// Bytes the shared-memory tiles are aligned to: what `wmma::load_matrix_sync` requires of its pointer.
const FRAGMENT_ALIGN: usize = 32;
/// Units per plane the kernel is laid out for (a CUDA warp; on other devices only a way to split the cube).
const PLANE: usize = 32;

/// One cube per `16 · planes` query rows of one (sequence, head): each plane owns 16 rows of the tile for both
/// products, two units own each row for the softmax. `bc` keys and values per block; keys past `t` (or, with
/// `causal`, past the row's own position `row + t − s`) get no weight; with `masked`, the additive f32 mask
/// `[b, 1, s, t]` is added to the scaled scores (it is not read otherwise).
///
/// Every unit takes part in every barrier: the loops' bounds depend only on the cube.
#[cube(launch_unchecked)]
// `div_ceil` is not among the operations cubecl expands.
#[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
pub(super) fn tile_attention_kernel<F: Float, N: Size>(
    q: &Array<Vector<F, N>>,
    k: &Array<Vector<F, N>>,
    v: &Array<Vector<F, N>>,
    mask: &Array<f32>,
    out: &mut Array<F>,
    cubes: u32,
    nh: u32,
    rep: u32,
    s: u32,
    t: u32,
    cap: u32,
    qblocks: u32,
    scale: f32,
    #[comptime] d: usize,
    #[comptime] planes: usize,
    #[comptime] bc: usize,
    #[comptime] masked: bool,
    #[comptime] causal: bool,
    #[comptime] tensor_cores: bool,
    #[comptime] padded: bool,
) {
    let rows = comptime!(TILE * planes);
    let units = comptime!(PLANE * planes);
    // The head as the tiles hold it and the tiles' row strides ([`Strides`]; `shared_bytes` sizes the same).
    let dp = comptime!(Strides::of(d, bc, padded).head);
    let dq = comptime!(Strides::of(d, bc, padded).qkv);
    let sq = comptime!(Strides::of(d, bc, padded).scores);
    let pq = comptime!(Strides::of(d, bc, padded).probs);
    let oq = comptime!(Strides::of(d, bc, padded).out);
    // The tiles the fragments load from and store to (`wmma` wants 256-bit aligned pointers; every offset the
    // kernel takes into them is a multiple of 16 values).
    let mut q_s = SharedMemory::<F>::new_aligned(comptime!(rows * dq), FRAGMENT_ALIGN);
    let mut k_s = SharedMemory::<F>::new_aligned(comptime!(bc * dq), FRAGMENT_ALIGN);
    let mut v_s = SharedMemory::<F>::new_aligned(comptime!(bc * dq), FRAGMENT_ALIGN);
    let mut s_s = SharedMemory::<f32>::new_aligned(comptime!(rows * sq), FRAGMENT_ALIGN);
    let mut p_s = SharedMemory::<F>::new_aligned(comptime!(rows * pq), FRAGMENT_ALIGN);
    let mut o_s = SharedMemory::<f32>::new_aligned(comptime!(rows * oq), FRAGMENT_ALIGN);
    let mut red_m = SharedMemory::<f32>::new(units);
    let mut red_l = SharedMemory::<f32>::new(units);
    let mut l_s = SharedMemory::<f32>::new(rows);
    let mut alpha_s = SharedMemory::<f32>::new(rows);

    let cube = CUBE_POS;
    // Cubes past the end (the grid is rounded up) do nothing; the condition is the same for a whole cube.
    if cube < cubes as usize {
        let unit = UNIT_POS as usize;
        let plane = unit / PLANE;
        let lane = unit % PLANE;
        let (s, t, cap) = (s as usize, t as usize, cap as usize);
        let qb = cube % qblocks as usize;
        let bh = cube / qblocks as usize;
        let bi = bh / nh as usize;
        let kvh = (bh % nh as usize) / rep as usize;
        let nkv = nh as usize / rep as usize;
        let q0 = qb * rows;
        let q_base = bh * s * d;
        // The output is `[b, s, nh, d]` in memory (the host hands it back as `[b, nh, s, d]` by swapping the two
        // dimensions): what the output projection reads, so the callers' transpose back is no copy.
        let row_stride = nh as usize * d;
        let out_base = bi * s * row_stride + (bh % nh as usize) * d;
        let kv_base = (bi * nkv + kvh) * cap * d;
        let zero = F::cast_from(0.0f32);

        // Queries, keys and values are read `vs` values at a time (`vs` divides `d`, and so the padded `dp`).
        let vs = q.vector_size().comptime();
        let dv = dp / vs;
        let mut i = unit;
        while i < rows * dv {
            let r = i / dv;
            let c = (i % dv) * vs;
            let row = q0 + r;
            if row < s && c < d {
                let x = q[(q_base + row * d + c) / vs];
                for e in 0..vs {
                    q_s[r * dq + c + e] = x[e];
                }
            } else {
                for e in 0..vs {
                    q_s[r * dq + c + e] = zero;
                }
            }
            i += units;
        }
        let mut i = unit;
        while i < rows * oq {
            o_s[i] = 0.0;
            i += units;
        }

        // The row this unit takes in the softmax, and which half of its block's columns. Each unit starts its
        // half at a column that moves with the row, so that the units of a plane read the scores tile and write
        // the probabilities in different shared-memory banks (all from the same column: up to 32-way conflicts).
        let r = unit / 2;
        let half = unit % 2;
        let first = unit - half;
        let row = q0 + r;
        let width = comptime!(bc / 2);
        let lowest = f32::new(-3.4028235e38);
        let mut m = lowest;
        let mut l = f32::new(0.0);
        // With the causal mask no row of the tile sees past its last row's position.
        let mut kend = t;
        if causal {
            kend = min(t, q0 + rows + t - s);
        }
        let blocks = (kend + bc - 1) / bc;
        sync_cube();

        for jb in 0..blocks {
            let j0 = jb * bc;
            let mut i = unit;
            while i < bc * dv {
                let r = i / dv;
                let c = (i % dv) * vs;
                let j = j0 + r;
                if j < t && c < d {
                    let at = (kv_base + j * d + c) / vs;
                    let (kx, vx) = (k[at], v[at]);
                    for e in 0..vs {
                        k_s[r * dq + c + e] = kx[e];
                        v_s[r * dq + c + e] = vx[e];
                    }
                } else {
                    for e in 0..vs {
                        k_s[r * dq + c + e] = zero;
                        v_s[r * dq + c + e] = zero;
                    }
                }
                i += units;
            }
            sync_cube();

            // Scores of the plane's 16 rows against the block's keys (kᵀ: a key is a column of the product).
            for jc in 0..comptime!(bc / TILE) {
                tile_product::<F>(
                    &q_s,
                    plane * TILE * dq,
                    dq,
                    &k_s,
                    jc * TILE * dq,
                    dq,
                    &mut s_s,
                    plane * TILE * sq + jc * TILE,
                    sq,
                    lane,
                    dp,
                    true,
                    false,
                    tensor_cores,
                );
            }
            sync_cube();

            // The block's maximum of the row (this unit's half, then its partner's), the new running maximum.
            // Each visible score goes back to its place scaled and masked, for the exponentials below (the same
            // unit's places: no barrier between the two loops, and the mask read once).
            let mut mb = lowest;
            for cc in 0..width {
                let col = half * width + (cc + r) % width;
                let j = j0 + col;
                if visible(j, row, s, t, causal) {
                    let x = score(
                        &s_s,
                        mask,
                        r * sq + col,
                        (bi * s + row) * t + j,
                        row < s,
                        scale,
                        masked,
                    );
                    s_s[r * sq + col] = x;
                    mb = max(mb, x);
                }
            }
            red_m[unit] = mb;
            sync_cube();
            let m_new = max(m, max(red_m[first], red_m[first + 1]));
            let alpha = f32::exp(m - m_new);
            let mut sum = f32::new(0.0);
            for cc in 0..width {
                let col = half * width + (cc + r) % width;
                let j = j0 + col;
                let mut e = f32::new(0.0);
                if visible(j, row, s, t, causal) {
                    e = f32::exp(s_s[r * sq + col] - m_new);
                }
                p_s[r * pq + col] = F::cast_from(e);
                sum += e;
            }
            red_l[unit] = sum;
            if half == 0 {
                alpha_s[r] = alpha;
            }
            m = m_new;
            sync_cube();
            l = l * alpha + red_l[first] + red_l[first + 1];
            // The output so far, rescaled to the new maximum: consecutive units on consecutive values (a unit
            // per row would have every unit of a plane in the same bank).
            let mut i = unit;
            while i < rows * dp {
                let at = (i / dp) * oq + i % dp;
                o_s[at] = o_s[at] * alpha_s[i / dp];
                i += units;
            }
            sync_cube();

            // The plane's 16 rows of output += probabilities · values.
            for dc in 0..comptime!(dp / TILE) {
                tile_product::<F>(
                    &p_s,
                    plane * TILE * pq,
                    pq,
                    &v_s,
                    dc * TILE,
                    dq,
                    &mut o_s,
                    plane * TILE * oq + dc * TILE,
                    oq,
                    lane,
                    bc,
                    false,
                    true,
                    tensor_cores,
                );
            }
            sync_cube();
        }

        if half == 0 {
            l_s[r] = l;
        }
        sync_cube();
        let mut i = unit;
        while i < rows * dp {
            let row = q0 + i / dp;
            if row < s && i % dp < d {
                out[out_base + row * row_stride + i % dp] =
                    F::cast_from(o_s[(i / dp) * oq + i % dp] / l_s[i / dp]);
            }
            i += units;
        }
    }
}

/// Whether key `j` gets weight from query row `row` (of `s`, the last at position `t − 1`).
#[cube]
fn visible(j: usize, row: usize, s: usize, t: usize, #[comptime] causal: bool) -> bool {
    if causal { j < t && j + s <= row + t } else { j < t }
}

/// The scaled score at `at` of the scores tile, plus the mask at `mat` where `masked` and the row is a query.
#[cube]
// `masked` is known at expansion (the outer test is gone from the kernel), `real` at run time.
#[allow(clippy::collapsible_if)]
fn score(
    s_s: &SharedMemory<f32>,
    mask: &Array<f32>,
    at: usize,
    mat: usize,
    real: bool,
    scale: f32,
    #[comptime] masked: bool,
) -> f32 {
    let mut x = s_s[at] * scale;
    if masked {
        if real {
            x += mask[mat];
        }
    }
    x
}

/// One plane's 16×16 tile of `dst` (f32, rows of `d_ld` from `d_off`) = (with `accumulate`, itself +)
/// `A · B`, `A` 16×`kl` (rows of `a_ld` from `a_off`), `B` `kl`×16: with `b_by_columns` its column `n` is the row
/// `b_off + n · b_ld` (keys for `q·kᵀ`), else its row `k` is at `b_off + k · b_ld` (values). Tensor-core fragments
/// with `tensor_cores`, else eight outputs per unit of the plane.
#[cube]
#[allow(clippy::too_many_arguments)]
fn tile_product<F: Float>(
    a: &SharedMemory<F>,
    a_off: usize,
    a_ld: usize,
    b: &SharedMemory<F>,
    b_off: usize,
    b_ld: usize,
    dst: &mut SharedMemory<f32>,
    d_off: usize,
    d_ld: usize,
    lane: usize,
    #[comptime] kl: usize,
    #[comptime] b_by_columns: bool,
    #[comptime] accumulate: bool,
    #[comptime] tensor_cores: bool,
) {
    if tensor_cores {
        let acc = unsafe {
            cmma::Matrix::<f32>::uninitialized(
                cmma::MatrixIdent::Accumulator,
                TILE,
                TILE,
                TILE,
                cmma::MatrixLayout::Undefined,
            )
        };
        if accumulate {
            cmma::load_with_layout(
                &acc,
                &dst.slice(d_off, d_off + (TILE - 1) * d_ld + TILE),
                d_ld as u32,
                cmma::MatrixLayout::RowMajor,
            );
        } else {
            cmma::fill(&acc, 0.0f32);
        }
        for kc in 0..comptime!(kl / TILE) {
            let a_start = a_off + kc * TILE;
            let a_m = cmma::Matrix::<F>::from_slice(
                cmma::MatrixIdent::A,
                TILE,
                TILE,
                TILE,
                cmma::MatrixLayout::RowMajor,
                &a.slice(a_start, a_start + (TILE - 1) * a_ld + TILE),
                a_ld as u32,
            );
            // Keys are B's columns (`b_by_columns`: column-major, a fragment of 16 keys further on per step of 16
            // dimensions); values its rows (row-major, 16 rows further on per step).
            let layout = comptime!(if b_by_columns {
                cmma::MatrixLayout::ColMajor
            } else {
                cmma::MatrixLayout::RowMajor
            });
            let b_start = if b_by_columns {
                b_off + kc * TILE
            } else {
                b_off + kc * TILE * b_ld
            };
            let b_m = cmma::Matrix::<F>::from_slice(
                cmma::MatrixIdent::B,
                TILE,
                TILE,
                TILE,
                layout,
                &b.slice(b_start, b_start + (TILE - 1) * b_ld + TILE),
                b_ld as u32,
            );
            cmma::execute::<F, F, f32, f32>(&a_m, &b_m, &acc, &acc);
        }
        cmma::store(
            &mut dst.slice_mut(d_off, d_off + (TILE - 1) * d_ld + TILE),
            &acc,
            d_ld as u32,
            cmma::MatrixLayout::RowMajor,
        );
    } else {
        for e in 0..comptime!(TILE * TILE / PLANE) {
            let idx = lane + e * PLANE;
            let (i, n) = (idx / TILE, idx % TILE);
            let mut sum = f32::new(0.0);
            if accumulate {
                sum = dst[d_off + i * d_ld + n];
            }
            for kk in 0..kl {
                let mut bv = b[b_off + kk * b_ld + n];
                if b_by_columns {
                    bv = b[b_off + n * b_ld + kk];
                }
                sum += f32::cast_from(a[a_off + i * a_ld + kk]) * f32::cast_from(bv);
            }
            dst[d_off + i * d_ld + n] = sum;
        }
    }
}

/// The kernel's layout: planes per cube (each 16 query rows) and keys per block (a multiple of 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileLayout {
    pub planes: usize,
    pub block: usize,
}

impl TileLayout {
    /// `PLANES:BLOCK` (`MMREASON_TILE_ATTN`), e.g. `4:32`; `None` for anything else or a layout the kernel does
    /// not take (1–8 planes; blocks of 16–128 keys, a multiple of 16).
    pub fn parse(s: &str) -> Option<Self> {
        let (p, b) = s.split_once(':')?;
        let (planes, block) = (p.trim().parse().ok()?, b.trim().parse().ok()?);
        ((1..=8).contains(&planes) && (16..=128).contains(&block) && block % TILE == 0)
            .then_some(TileLayout { planes, block })
    }
}

/// `MMREASON_TILE_ATTN=PLANES:BLOCK` fixes the layout (to time one against another on a device); unset, the
/// kernel takes [`tile_layout`]'s. A value that does not parse is reported once and ignored.
fn layout_from_env() -> Option<TileLayout> {
    static LAYOUT: OnceLock<Option<TileLayout>> = OnceLock::new();
    *LAYOUT.get_or_init(|| {
        let v = std::env::var("MMREASON_TILE_ATTN").ok()?;
        let l = TileLayout::parse(&v);
        if l.is_none() {
            eprintln!(
                "mmreason: MMREASON_TILE_ATTN={v:?} is not PLANES:BLOCK (1-8 planes, 16-128 keys, a multiple of 16): ignored"
            );
        }
        l
    })
}

/// The head as [`tile_attention_kernel`]'s tiles hold it (zeros past `d` up to whole fragments) and the tiles'
/// row strides, in values, for blocks of `block` keys. With `padded`, a few values past each row, so that the
/// rows a fragment load reads together (`ldmatrix`: eight rows of 16 bytes) fall in different banks, and the
/// softmax's units too; every fragment offset stays a multiple of 32 bytes and every stride one of 16.
#[derive(Clone, Copy, Debug)]
struct Strides {
    head: usize,
    /// Queries, keys and values.
    qkv: usize,
    /// Scores (f32).
    scores: usize,
    /// Probabilities.
    probs: usize,
    /// Output (f32).
    out: usize,
}

impl Strides {
    fn of(d: usize, block: usize, padded: bool) -> Self {
        let head = d.div_ceil(TILE) * TILE;
        let pad = |n: usize| if padded { n } else { 0 };
        Strides {
            head,
            qkv: head + pad(8),
            scores: block + pad(4),
            probs: block + pad(8),
            out: head + pad(4),
        }
    }
}

/// Bytes of shared memory [`tile_attention_kernel`] declares for heads of `d` values of `size` bytes.
fn shared_bytes(TileLayout { planes, block }: TileLayout, d: usize, size: usize) -> usize {
    let rows = TILE * planes;
    let st = Strides::of(d, block, padded(size));
    rows * st.qkv * size
        + 2 * block * st.qkv * size
        + rows * st.scores * 4
        + rows * st.probs * size
        + rows * st.out * 4
        + 2 * PLANE * planes * 4
        + rows * 8
        // what aligning the six tiles can add
        + 6 * FRAGMENT_ALIGN
}

/// Whether the tiles' rows are padded (`tile_attention_kernel`'s `padded`): for the 16-bit dtypes, whose products
/// may run on tensor cores; f32 (plain products only) keeps them dense, and so the smaller shared memory.
fn padded(size: usize) -> bool {
    size == 2
}

/// The first layout whose shared memory fits `limit` bytes, in this order: four planes (each key block is read
/// once per 64 query rows) with blocks of 32 keys (83 KiB at a head of 128 in bf16: two cubes per H100 SM),
/// then longer blocks (fewer barriers), then fewer planes and shorter blocks for small shared memories. An
/// untimed guess until a device run compares them (`MMREASON_TILE_ATTN`, the kernel benches).
pub(crate) fn tile_layout(d: usize, size: usize, limit: usize) -> Option<TileLayout> {
    [
        (4, 32),
        (4, 64),
        (2, 64),
        (2, 32),
        (4, 16),
        (2, 16),
        (1, 64),
        (1, 32),
        (1, 16),
    ]
    .into_iter()
    .map(|(planes, block)| TileLayout { planes, block })
    .find(|&l| shared_bytes(l, d, size) <= limit)
}

/// Whether `tile_attention_kernel` runs its products on tensor cores for `dtype` on `client`'s device:
/// bf16/f16 with 16×16×16 fragments accumulating in f32, on planes of 32 units.
fn tensor_cores_for<R: CubeRuntime>(client: &ComputeClient<R>, dtype: DType) -> bool {
    use cubecl::ir::{ElemType, FloatKind, StorageType};
    let kind = match dtype {
        DType::BF16 => FloatKind::BF16,
        DType::F16 => FloatKind::F16,
        _ => return false,
    };
    let props = client.properties();
    let elem = StorageType::Scalar(ElemType::Float(kind));
    props.hardware.plane_size_min == PLANE as u32
        && props.hardware.plane_size_max == PLANE as u32
        && props.features.matmul.cmma.contains(&cubecl::features::MmaConfig {
            a_type: elem,
            b_type: elem,
            cd_type: StorageType::Scalar(ElemType::Float(FloatKind::F32)),
            m: TILE as u32,
            n: TILE as u32,
            k: TILE as u32,
        })
}

/// `softmax(q·kᵀ·scale [+ mask])·v` as [`tile_attention_kernel`]: `q` `[b, nh, s, d]`, `k`/`v` `[b, nkv, cap, d]`
/// of which the first `t` positions are read (`nh` a multiple of `nkv`: query head `h` reads key/value head
/// `h / (nh / nkv)`), `mask` f32 `[b, 1, s, t]`; with `causal`, query `i` sees keys up to its position `i + t − s`
/// (for a mask that is only that triangle: tiles then skip the blocks past their last row). Returns
/// `[b, nh, s, d]` laid out as `[b, s, nh, d]` (its dimensions 1 and 2 swapped: the callers' transpose to
/// `[b, s, nh·d]` for the output projection is then free); `None` for shapes it does not take (`d` over 256, `t < s` with
/// `causal`), other dtypes or a device without the shared memory. `layout` (else `MMREASON_TILE_ATTN`, else
/// [`tile_layout`]'s) sets the planes per cube and keys per block.
#[allow(clippy::too_many_arguments)]
pub fn tile_attention<B: Backend, R: CubeRuntime>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    t: usize,
    causal: bool,
    scale: f64,
    layout: Option<TileLayout>,
) -> Option<Tensor<B, 4>> {
    if !enabled() {
        return None;
    }
    let AttentionShape {
        b,
        nh,
        s,
        d,
        nkv,
        cap,
    } = AttentionShape::of(q, k, v, mask, t, causal)?;
    if d > 256 {
        return None;
    }
    let qc = cube_of::<B, R, 4>(q)?;
    let (kc, vc) = (cube_of::<B, R, 4>(k)?, cube_of::<B, R, 4>(v)?);
    let mc = match mask {
        Some(m) => cube_of::<B, R, 4>(m)?,
        // Not read by the kernel; an f32 buffer of any size stands in for it.
        None => {
            empty_device_contiguous_dtype(qc.client.clone(), qc.device.clone(), vec![1].into(), DType::F32)
        }
    };
    let client = qc.client.clone();
    let tensor_cores = tensor_cores_for(&client, qc.dtype);
    // cubecl gives a kernel its shared memory dynamically and raises the kernel's limit to what it declares (on
    // CUDA up to the opt-in maximum, 227 KiB on an H100).
    let limit = client.properties().hardware.max_shared_memory_size;
    let size = qc.dtype.size();
    let layout = match layout.or_else(layout_from_env) {
        Some(l) if shared_bytes(l, d, size) <= limit => l,
        Some(l) => {
            static WARNED: OnceLock<()> = OnceLock::new();
            WARNED.get_or_init(|| {
                eprintln!(
                    "mmreason: prefill attention layout {l:?} needs more than the device's {limit} bytes of shared memory at d={d}: the default layout instead"
                )
            });
            tile_layout(d, size, limit)?
        }
        None => tile_layout(d, size, limit)?,
    };
    // The widest vector that divides a head and at which each operand starts (rows start at multiples of d).
    let vector = vector_for(&client, qc.dtype, d, &[&qc, &kc, &vc]);
    let check = LaunchCheck::of(format!(
        "tile_attention {} {:?} d{d} v{vector} {layout:?} masked {} causal {causal} tensor cores {tensor_cores}",
        std::any::type_name::<R>(),
        qc.dtype,
        mask.is_some()
    ));
    if check.refused() {
        return None;
    }
    if let Err(e) = check.before(&client) {
        earlier_work_failed(&e);
    }
    let rows = TILE * layout.planes;
    let qblocks = s.div_ceil(rows);
    let cubes = b * nh * qblocks;
    // Heads inside positions, as the output projection reads them (`[b, s, nh, d]`; returned swapped).
    let out = empty_like(&qc, vec![b, s, nh, d]);
    launch_float!(
        qc.dtype,
        tile_attention_kernel,
        &client,
        row_grid(cubes),
        CubeDim::new_1d(u32_of(PLANE * layout.planes)?),
        vector,
        array(&qc),
        array(&kc),
        array(&vc),
        array(&mc),
        array(&out),
        u32_of(cubes)?,
        u32_of(nh)?,
        u32_of(nh / nkv)?,
        u32_of(s)?,
        u32_of(t)?,
        u32_of(cap)?,
        u32_of(qblocks)?,
        scale as f32,
        d,
        layout.planes,
        layout.block,
        mask.is_some(),
        causal,
        tensor_cores,
        padded(size),
    );
    // A variant the device cannot launch (compilation, resources) is reported once and left to the composition.
    if let Err(e) = check.confirm(&client) {
        let first = e.lines().next().unwrap_or(&e);
        eprintln!(
            "mmreason: prefill attention kernel ({:?}, d={d}, {layout:?}) failed to launch, the composed attention instead: {first}",
            qc.dtype
        );
        return None;
    }
    Some(tensor_of::<B, R, 4>(out)?.swap_dims(1, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fit_the_shared_memory_they_are_given() {
        // Mistral/Llama heads of 128 and CLIP's of 64 in bf16 on an H100 (227 KiB): four planes, blocks of 32
        // keys (83 and 51 KiB with the padded rows); under 48 KiB, heads of 128 get two planes and blocks of 16.
        let l = |planes, block| Some(TileLayout { planes, block });
        assert_eq!(tile_layout(128, 2, 227 * 1024), l(4, 32));
        assert_eq!(shared_bytes(TileLayout { planes: 4, block: 32 }, 128, 2), 84_672);
        assert_eq!(tile_layout(64, 2, 227 * 1024), l(4, 32));
        assert_eq!(tile_layout(128, 2, 48 * 1024), l(2, 16));
        for d in [16, 64, 128, 256] {
            for size in [2, 4] {
                for limit in [16 * 1024, 32 * 1024, 48 * 1024] {
                    if let Some(l) = tile_layout(d, size, limit) {
                        assert!(
                            shared_bytes(l, d, size) <= limit,
                            "{l:?} d={d} size={size} limit={limit}"
                        );
                    }
                }
            }
        }
        assert_eq!(tile_layout(256, 4, 16 * 1024), None);
    }

    #[test]
    fn layouts_parse_from_planes_and_block() {
        let l = |planes, block| Some(TileLayout { planes, block });
        assert_eq!(TileLayout::parse("4:64"), l(4, 64));
        assert_eq!(TileLayout::parse(" 2 : 32 "), l(2, 32));
        for bad in [
            "", "4", "4:", "0:32", "9:32", "4:24", "4:8", "4:256", "a:b", "4:32:1",
        ] {
            assert_eq!(TileLayout::parse(bad), None, "{bad:?}");
        }
    }
}
