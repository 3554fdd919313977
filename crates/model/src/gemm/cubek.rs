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
//! The same names run on burn-wgpu; strategies a device cannot run (tensor cores, plane operations) decline
//! with the reason printed once, and the caller falls back to the default path.

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

use crate::fused::cube::{primitive_of, tensor_of};

/// One of cubek's matmul strategies, by the name `MMREASON_GEMM=cubek:NAME` takes (the candidates burn-cubecl's
/// autotuner would time). `cmma` tiles use the WMMA-style API, `mma` the PTX `mma` instruction; `tma` kernels
/// load tiles with Hopper's tensor memory accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CubekGemm {
    name: &'static str,
}

impl CubekGemm {
    /// Every name, the plain-unit and matrix-vector kernels (any device with compute shaders) first.
    pub const NAMES: &'static [&'static str] = &[
        "auto",
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

    /// Whether the kernel double-buffers its k-stages (see `product_on` for why that matters).
    fn double_buffered(self) -> bool {
        let n = self.name;
        n.starts_with("double") || n.starts_with("ordered") || n.starts_with("specialized")
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
            "auto" => Strategy::Auto,
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
    if sb[D - 2] != k || sa[..D - 2] != sb[..D - 2] || m * k * n == 0 {
        return None;
    }
    // The double-buffered kernels of cubek 0.2 read past a partial last pair of k-stages without masking it:
    // `double_unit` on lavapipe is wrong for every k that is not a multiple of 16 (the fused-kernel test's
    // k = 72, and an attention's `p · v` over an odd number of positions). Those take the default path unless
    // k is a multiple of 64, which covers the tile sizes cubek picks on the devices we run and every model
    // width (4096, 14336, 1024, head sizes 64 and 128).
    if kind.double_buffered() && !k.is_multiple_of(64) {
        return None;
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
    match launched {
        Ok(()) => tensor_of::<B, R, D>(out),
        Err(e) => {
            warn_once(kind, &format!("{e:?}"));
            None
        }
    }
}

fn warn_once(kind: CubekGemm, why: &str) {
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
            "mmreason: cubek matmul `{}` not used here (default path instead): {first}",
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
            // Only `auto` may map to cubek's automatic selection.
            assert_eq!(
                matches!(s, Strategy::Auto),
                name == "auto",
                "`{name}` maps to {s}"
            );
        }
        assert!(CubekGemm::parse("tma").is_none());
        assert!(CubekGemm::parse("").is_none());
    }
}
