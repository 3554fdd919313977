//! cubek's matmul kernels — the ones behind burn-cubecl's matmul — with a strategy chosen by name
//! (`MMREASON_GEMM=cubek:NAME`), on burn's own stream.
//!
//! Why: burn-cubecl picks among these kernels only with its `autotune` feature, which this build leaves off;
//! without it every product runs cubek's default selection, which reached ≈94 TFLOP/s on an H100 where cuBLAS
//! reaches ≈800 (the GPU issue's table). cuBLAS, for its part, runs on a stream of its own that cubecl does
//! not let us order against burn's except through host synchronisations (`gemm::cuda`), which bound decoding
//! at batch 8–32. A cubek kernel on burn's stream needs none: if one of its tensor-core strategies (TMA and
//! warp-specialised ones among them) comes close to cuBLAS at the decode or prefill shapes, it wins where the
//! synchronisations cost more than the gap. A device run decides (`gemm_bench --cubek`, `benches/gpu/run.sh`).
//!
//! The same names run on burn-wgpu. Products a strategy cannot run (no tensor cores or plane operations on the
//! device, shapes cubek 0.2 gets wrong) are declined, the first reason printed once per strategy, and take
//! cuBLAS on CUDA, burn's matmul elsewhere.

use std::sync::{Mutex, OnceLock};

use burn::tensor::{DType, Tensor, backend::Backend};
use burn_cubecl::CubeRuntime;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use cubek_matmul::components::tile::TileMatmulKind;
use cubek_matmul::definition::{MatmulElems, MatmulGlobalElems};
use cubek_matmul::launch::Strategy;
use cubek_matmul::routines::{
    BlueprintStrategy, TileSizeSelection, double_buffering::DoubleBufferingArgs,
    double_unit::DoubleUnitSelectionArgs, ordered_double_buffering::OrderedSelectionArgs, simple::SimpleArgs,
    simple_unit::SimpleUnitSelectionArgs,
};
use cubek_std::InputBinding;

use crate::fused::cube::{LaunchCheck, primitive_of, tensor_of};

/// One of cubek's matmul strategies, by the name `MMREASON_GEMM=cubek:NAME` takes (the candidates burn-cubecl's
/// autotuner would time). `cmma` tiles use the WMMA-style API, `mma` the PTX `mma` instruction; `tma` kernels
/// load tiles with Hopper's tensor memory accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CubekGemm {
    name: &'static str,
}

impl CubekGemm {
    /// Every name, the plain-unit and matrix-vector kernels (any device with compute shaders) first. cubek's
    /// `Auto` is left out: it is what burn's own matmul runs (`MMREASON_GEMM=burn`), and it panics on setup
    /// errors other than a missing feature instead of returning them.
    pub const NAMES: &'static [&'static str] = &[
        "naive",
        "simple_unit",
        "double_unit",
        "simple_vecmat",
        "double_vecmat",
        "gemv_plane",
        "gemv_unit",
        "simple_cmma",
        "simple_mma",
        "simple_multi_cmma",
        "simple_multi_mma",
        "ordered_cmma",
        "ordered_mma",
        "double_cmma",
        "double_mma",
        "double_spec_cmma",
        "double_spec_mma",
        "specialized_cmma",
        "specialized_mma",
        "tma_cmma",
        "tma_mma",
        "tma_multi_cmma",
        "tma_multi_mma",
        "specialized_tma_cmma",
        "specialized_tma_mma",
    ];

    /// The strategy called `name`, if there is one.
    pub fn parse(name: &str) -> Option<CubekGemm> {
        Self::NAMES
            .iter()
            .find(|n| **n == name)
            .map(|&name| CubekGemm { name })
    }

    /// Its name (as [`Self::parse`] takes it).
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The k-stage sizes (powers of two) the kernel may pick, for the ones that run stages in pairs, on a device
    /// with planes of `plane` units; `None` for the rest.
    ///
    /// cubek 0.2's double-buffered, ordered and warp-specialised (non-TMA) loops always run an even number of
    /// k-stages, but switch their k bounds check on only when k is not a whole number of *one* stage
    /// (`check_k_bounds = k % stage_k != 0`): when k is an odd number of stages the last, unmasked stage reads
    /// past the row and adds what lies there (on lavapipe `double_unit`, stage 8, is wrong at k = 8, 24, 40,
    /// 72, …). Stage sizes from its selectors: `double_unit` twice its tile (4–16 values), the tensor-core
    /// ones a plane's worth (16-wide tiles, partition `plane / 16`), `double_vecmat` a plane's worth of vectors
    /// (up to 16 values each). TMA kernels are masked by the hardware and the single-stage ones by `div_ceil`.
    fn paired_stages(self, plane: usize) -> Option<(usize, usize)> {
        let n = self.name;
        if n.contains("tma") {
            None
        } else if n == "double_unit" {
            Some((4, 32))
        } else if n == "double_vecmat" {
            Some((plane.max(4), plane.max(4) * 16))
        } else if n.starts_with("double") || n.starts_with("ordered") || n.starts_with("specialized") {
            Some((16, 2 * plane.max(8)))
        } else {
            None
        }
    }

    /// Whether cubek computes an `m × k · k × n` product right with this kernel: one with paired stages is
    /// wrong exactly when k is an odd number of its stage, i.e. when the largest power of two dividing k is the
    /// stage size. `double_unit` on a matrix-vector product (m or n of 1) picks stages of 2·t² (t up to 16)
    /// instead, beyond the range above: declined outright.
    fn takes(self, m: usize, k: usize, n: usize, plane: usize) -> bool {
        if self.name == "double_unit" && (m == 1 || n == 1) {
            return false;
        }
        match self.paired_stages(plane) {
            None => true,
            Some((lo, hi)) => {
                let pow2 = k & k.wrapping_neg();
                !(lo..=hi).contains(&pow2)
            }
        }
    }

    /// cubek's strategy value; `None` only for a name missing from this table (a test keeps the two in step).
    fn strategy(self) -> Option<Strategy> {
        use BlueprintStrategy::Inferred;
        use TileMatmulKind::{Cmma, Mma};
        // Plain values: the TMA and non-TMA strategies wrap the same arguments in different routine types.
        let simple = |multi_rows, tile_matmul| SimpleArgs {
            multi_rows,
            tile_matmul,
        };
        let double = |specialized, tile_matmul| {
            Inferred(DoubleBufferingArgs {
                specialized,
                tile_matmul,
            })
        };
        let ordered = |tile_matmul| {
            Inferred(OrderedSelectionArgs {
                partition_k: Some(2),
                row_count: Some(8),
                rows_per_plane: Some(2),
                tile_matmul,
            })
        };
        let tile_size = TileSizeSelection::MaxTileSize;
        Some(match self.name {
            "naive" => Strategy::Naive,
            "simple_unit" => Strategy::SimpleUnit(Inferred(SimpleUnitSelectionArgs { tile_size })),
            "double_unit" => Strategy::DoubleUnit(Inferred(DoubleUnitSelectionArgs { tile_size })),
            "simple_vecmat" => Strategy::SimpleVecMat(Inferred(().into())),
            "double_vecmat" => Strategy::DoubleVecMat(Inferred(().into())),
            "gemv_plane" => Strategy::GemvPlaneParallel(Inferred(Default::default())),
            "gemv_unit" => Strategy::GemvUnitPerpendicular(Inferred(Default::default())),
            "simple_cmma" => Strategy::SimpleCyclicCmma(Inferred(simple(false, Cmma))),
            "simple_mma" => Strategy::SimpleCyclicMma(Inferred(simple(false, Mma))),
            "simple_multi_cmma" => Strategy::SimpleCyclicCmma(Inferred(simple(true, Cmma))),
            "simple_multi_mma" => Strategy::SimpleCyclicMma(Inferred(simple(true, Mma))),
            "ordered_cmma" => Strategy::OrderedDoubleCmma(ordered(Cmma)),
            "ordered_mma" => Strategy::OrderedDoubleMma(ordered(Mma)),
            "double_cmma" => Strategy::DoubleCyclicCmma(double(false, Cmma)),
            "double_mma" => Strategy::DoubleCyclicMma(double(false, Mma)),
            "double_spec_cmma" => Strategy::DoubleCyclicCmma(double(true, Cmma)),
            "double_spec_mma" => Strategy::DoubleCyclicMma(double(true, Mma)),
            "specialized_cmma" => Strategy::SpecializedCyclicCmma(Inferred(().into())),
            "specialized_mma" => Strategy::SpecializedCyclicMma(Inferred(().into())),
            "tma_cmma" => Strategy::SimpleTmaCmma(Inferred(simple(false, Cmma))),
            "tma_mma" => Strategy::SimpleTmaMma(Inferred(simple(false, Mma))),
            "tma_multi_cmma" => Strategy::SimpleTmaCmma(Inferred(simple(true, Cmma))),
            "tma_multi_mma" => Strategy::SimpleTmaMma(Inferred(simple(true, Mma))),
            "specialized_tma_cmma" => Strategy::SpecializedTmaCmma(Inferred(().into())),
            "specialized_tma_mma" => Strategy::SpecializedTmaMma(Inferred(().into())),
            _ => return None,
        })
    }
}

/// `a · b` for `a` `[…, m, k]` and `b` `[…, k, n]` (rank 2 or 3, same batch; `b` may be a transposed view,
/// which the kernels read in place) with cubek's strategy `kind`, on burn-cuda or burn-wgpu; `None` where `B`
/// is neither, the operands are not one float dtype, or the strategy declines (the reason printed once per
/// strategy).
pub fn product<B: Backend, const D: usize>(
    a: &Tensor<B, D>,
    b: &Tensor<B, D>,
    kind: CubekGemm,
) -> Option<Tensor<B, D>> {
    #[cfg(feature = "cuda")]
    if let Some(y) = product_on::<B, burn_cubecl::cubecl::cuda::CudaRuntime, D>(a, b, kind) {
        return Some(y);
    }
    #[cfg(feature = "wgpu")]
    if let Some(y) = product_on::<B, burn::backend::wgpu::WgpuRuntime, D>(a, b, kind) {
        return Some(y);
    }
    None
}

fn product_on<B: Backend, R: CubeRuntime, const D: usize>(
    a: &Tensor<B, D>,
    b: &Tensor<B, D>,
    kind: CubekGemm,
) -> Option<Tensor<B, D>> {
    if !(2..=3).contains(&D) {
        return None;
    }
    let ac = primitive_of::<B, R, D>(a.clone())?;
    let bc = primitive_of::<B, R, D>(b.clone())?;
    let dtype = ac.dtype;
    if bc.dtype != dtype || !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return None;
    }
    let (sa, sb) = (a.dims(), b.dims());
    let (m, k, n) = (sa[D - 2], sa[D - 1], sb[D - 1]);
    if sb[D - 2] != k || sa[..D - 2] != sb[..D - 2] || sa.iter().product::<usize>() * n == 0 {
        return None;
    }
    // Shapes cubek 0.2 gets wrong are declined (see `paired_stages`); cubek takes a plane of 32
    // where the device reports none.
    let plane = match ac.client.properties().hardware.plane_size_max {
        0 => 32,
        p => p as usize,
    };
    if !kind.takes(m, k, n, plane) {
        declined(
            kind,
            &format!("k = {k} is an odd number of its k-stages at m = {m}, n = {n}"),
        );
        return None;
    }
    // TMA descriptors need 16-byte aligned starts; cubek checks the strides but not a view's offset (a failed
    // descriptor would surface as a launch failure, not an error returned here).
    if kind.name.contains("tma")
        && ![&ac, &bc]
            .iter()
            .all(|t| t.handle.offset_start.unwrap_or(0).is_multiple_of(16))
    {
        declined(kind, "an operand starts at an offset TMA cannot take");
        return None;
    }
    // What the launch depends on: the strategy, dtype, shapes and the operands' strides (TMA descriptors take
    // them). One entry per distinct product: a flush before and after its first launch.
    let check = LaunchCheck::of(format!(
        "cubek {} {} {dtype:?} {sa:?}×{n} strides {:?} {:?}",
        std::any::type_name::<R>(),
        kind.name,
        ac.meta.strides(),
        bc.meta.strides()
    ));
    if check.refused() {
        return None;
    }
    if let Err(e) = check.before(&ac.client) {
        crate::fused::cube::earlier_work_failed(&e);
    }
    let strategy = kind.strategy()?;
    let mut shape = sa.to_vec();
    shape[D - 1] = n;
    let out = empty_device_contiguous_dtype(ac.client.clone(), ac.device.clone(), shape.into(), dtype);
    let client = out.client.clone();
    let mut elems = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: dtype.into(),
        rhs: dtype.into(),
        out: dtype.into(),
    });
    let launched = cubek_matmul::launch::launch_ref(
        &strategy,
        &client,
        InputBinding::new(ac.binding(), dtype.into()),
        InputBinding::new(bc.binding(), dtype.into()),
        out.clone().binding(),
        &mut elems,
    );
    if let Err(e) = launched {
        declined(kind, &format!("{e:?}"));
        return None;
    }
    // A failure cubecl keeps in the stream (run 7: `Tile shape must be non-zero and <= 256`, a TMA tile at
    // m = 32) refuses this strategy at this shape, rather than panicking when the result is read.
    if let Err(e) = check.confirm(&client) {
        declined(kind, &e);
        return None;
    }
    tensor_of::<B, R, D>(out)
}

/// Says once per strategy that it declined a product, and why (the first reason met).
fn declined(kind: CubekGemm, why: &str) {
    static WARNED: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let mut warned = match WARNED.get_or_init(Default::default).lock() {
        Ok(w) => w,
        Err(poisoned) => poisoned.into_inner(),
    };
    if !warned.contains(&kind.name) {
        warned.push(kind.name);
        // cubek's setup errors can be long (a whole blueprint); the first line says what.
        let first = why.lines().next().unwrap_or(why);
        eprintln!(
            "mmreason: cubek matmul `{}` declined a product (cuBLAS on CUDA, burn's matmul elsewhere, instead; \
             said once): {first}",
            kind.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_its_strategy() {
        for &name in CubekGemm::NAMES {
            let kind = CubekGemm::parse(name).expect("listed name parses");
            let s = kind
                .strategy()
                .unwrap_or_else(|| panic!("`{name}` has no strategy"));
            assert!(!matches!(s, Strategy::Auto), "`{name}` maps to {s}");
        }
        assert!(CubekGemm::parse("tma").is_none());
        assert!(CubekGemm::parse("auto").is_none());
        assert!(CubekGemm::parse("").is_none());
    }

    #[test]
    fn paired_stage_kernels_decline_an_odd_number_of_stages() {
        let unit = CubekGemm::parse("double_unit").expect("listed");
        // lavapipe's failures (stage 8): 8, 24, 40, 72 are odd multiples of 8; its passes include 16, 48, 128.
        for k in [8, 24, 40, 72, 104, 136] {
            assert!(!unit.takes(5, k, 40, 8), "double_unit must decline k = {k}");
        }
        for k in [64, 128, 4096, 14336, 577, 513, 7] {
            assert!(unit.takes(5, k, 40, 8), "double_unit should take k = {k}");
        }
        // Tensor-core stages of a 32-unit plane: 16–64.
        let double = CubekGemm::parse("double_mma").expect("listed");
        assert!(!double.takes(5, 32, 40, 32) && !double.takes(5, 96, 40, 32) && !double.takes(5, 64, 40, 32));
        assert!(
            double.takes(5, 128, 40, 32) && double.takes(5, 4096, 40, 32) && double.takes(5, 577, 40, 32)
        );
        // bf16 vectors of 8 on a 32-unit plane: stages up to 512.
        let vecmat = CubekGemm::parse("double_vecmat").expect("listed");
        assert!(
            !vecmat.takes(5, 256, 40, 32) && !vecmat.takes(5, 768, 40, 32) && vecmat.takes(5, 4096, 40, 32)
        );
        // A matrix-vector product picks other stages in `double_unit`.
        assert!(!unit.takes(4, 128, 1, 32) && !unit.takes(1, 128, 40, 32) && unit.takes(4, 128, 40, 32));
        // TMA and single-stage kernels take any k.
        for name in [
            "tma_mma",
            "specialized_tma_mma",
            "simple_mma",
            "simple_unit",
            "naive",
        ] {
            let kind = CubekGemm::parse(name).expect("listed");
            assert!(
                [8, 24, 72, 4096].iter().all(|&k| kind.takes(5, k, 40, 32)),
                "{name}"
            );
        }
    }
}
