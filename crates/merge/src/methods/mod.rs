//! Merge methods: each a pure function over one tensor's inputs. The registry maps mergekit's method names
//! (and ours) to them; the planner (`crate::plan`) streams tensors through.

pub mod gta;
pub mod linear;
pub mod model_stock;
pub mod slerp;

use crate::error::{MergeError, Result};
use crate::sparse_task_vector::{Direction, Scope, SparseTaskVector, TopK};
use crate::sparsify::Rescale;

/// Every method, by its mergekit name (plus `sparse_task_vector`, the study's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Linear,
    TaskArithmetic,
    Ties,
    DareLinear,
    DareTies,
    Breadcrumbs,
    BreadcrumbsTies,
    Della,
    DellaLinear,
    Slerp,
    ModelStock,
    SparseTaskVector,
}

/// How a generalized-task-arithmetic method sparsifies each task vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sparsification {
    Magnitude,
    Random,
    MagnitudeOutliers,
    DellaMagprune,
}

impl Method {
    pub const ALL: [Method; 12] = [
        Method::Linear,
        Method::TaskArithmetic,
        Method::Ties,
        Method::DareLinear,
        Method::DareTies,
        Method::Breadcrumbs,
        Method::BreadcrumbsTies,
        Method::Della,
        Method::DellaLinear,
        Method::Slerp,
        Method::ModelStock,
        Method::SparseTaskVector,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Linear => "linear",
            Method::TaskArithmetic => "task_arithmetic",
            Method::Ties => "ties",
            Method::DareLinear => "dare_linear",
            Method::DareTies => "dare_ties",
            Method::Breadcrumbs => "breadcrumbs",
            Method::BreadcrumbsTies => "breadcrumbs_ties",
            Method::Della => "della",
            Method::DellaLinear => "della_linear",
            Method::Slerp => "slerp",
            Method::ModelStock => "model_stock",
            Method::SparseTaskVector => "sparse_task_vector",
        }
    }

    pub fn from_name(name: &str) -> Result<Self> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| MergeError::UnknownMethod {
                name: name.to_string(),
                known: Method::ALL.map(Method::name).join(", "),
            })
    }

    /// Whether the method needs `base_model`.
    pub fn needs_base(self) -> bool {
        !matches!(self, Method::Linear)
    }

    /// mergekit's registry entries for the generalized task arithmetic family: (consensus, sparsification,
    /// default normalize, default rescale).
    pub fn gta(self) -> Option<(bool, Option<Sparsification>, bool, bool)> {
        use Sparsification::*;
        Some(match self {
            Method::TaskArithmetic => (false, None, false, false),
            Method::Ties => (true, Some(Magnitude), true, false),
            Method::DareTies => (true, Some(Random), false, true),
            Method::DareLinear => (false, Some(Random), false, true),
            Method::Breadcrumbs => (false, Some(MagnitudeOutliers), false, false),
            Method::BreadcrumbsTies => (true, Some(MagnitudeOutliers), false, false),
            Method::Della => (true, Some(DellaMagprune), true, true),
            Method::DellaLinear => (false, Some(DellaMagprune), false, true),
            _ => return None,
        })
    }

    /// Whether the method draws random numbers (results depend on `seed`).
    pub fn is_random(self) -> bool {
        matches!(
            self.gta(),
            Some((
                _,
                Some(Sparsification::Random | Sparsification::DellaMagprune),
                _,
                _
            ))
        )
    }
}

/// Parameters of one input model for one tensor (mergekit's tensor parameters), already evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelParams {
    pub weight: f64,
    pub density: f64,
    pub gamma: f64,
    pub epsilon: f64,
}

/// Method-wide parameters for one tensor, already evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalParams {
    pub normalize: bool,
    pub rescale: Rescale,
    pub lambda: f64,
    /// slerp's interpolation factor.
    pub t: f64,
    pub filter_wise: bool,
    pub seed: u64,
    /// sparse_task_vector and TIES-global: where top-K is taken.
    pub scope: Scope,
    pub direction: Direction,
}

/// One output tensor's inputs, decoded to f32.
#[derive(Debug)]
pub struct TensorInputs<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub base: Option<&'a [f32]>,
    /// The non-base models, in config order, with their parameters.
    pub models: Vec<(&'a [f32], ModelParams)>,
}

/// Precomputed global thresholds (one per non-base model) for methods with a global top-K scope.
pub type GlobalThresholds<'a> = Option<&'a mut [(crate::select::Threshold, u64)]>;

impl Method {
    /// Merges one tensor.
    /// `rng` is the run's one random stream (DARE/DELLA draw from it; others ignore it).
    pub fn merge(
        self,
        inp: &TensorInputs<'_>,
        g: &GlobalParams,
        global: GlobalThresholds<'_>,
        rng: &mut crate::mt19937::Mt19937,
    ) -> Result<Vec<f32>> {
        let param = |e: String| MergeError::Param(format!("tensor `{}`: {e}", inp.name));
        let base = || {
            inp.base
                .ok_or_else(|| param(format!("{} needs a base_model", self.name())))
        };
        match self {
            Method::Linear => {
                let all: Vec<(&[f32], f64)> = inp.models.iter().map(|(v, p)| (*v, p.weight)).collect();
                Ok(linear::merge(&all, g.normalize))
            }
            Method::Slerp => {
                let [(other, _)] = inp.models.as_slice() else {
                    return Err(param(
                        "slerp merges exactly two models (base_model and one other)".into(),
                    ));
                };
                Ok(slerp::merge(g.t, base()?, other))
            }
            Method::ModelStock => {
                if inp.models.len() < 2 {
                    return Err(param(
                        "model_stock needs a base model plus at least two others".into(),
                    ));
                }
                let ws: Vec<&[f32]> = inp.models.iter().map(|(v, _)| *v).collect();
                Ok(model_stock::merge(base()?, &ws, inp.shape, g.filter_wise))
            }
            Method::SparseTaskVector => {
                let [(other, p)] = inp.models.as_slice() else {
                    return Err(param(
                        "sparse_task_vector takes base_model plus exactly one other model".into(),
                    ));
                };
                let stv = SparseTaskVector {
                    alpha: p.weight,
                    topk: TopK::Density(p.density),
                    scope: g.scope,
                    direction: g.direction,
                };
                let out = match global {
                    Some(th) => {
                        let (t, seen) = &mut th[0];
                        stv.apply(base()?, other, t, seen).0
                    }
                    None => stv.merge_tensor(base()?, other).0,
                };
                Ok(out)
            }
            _ => gta::merge(self, inp, base()?, g, global, rng).map_err(param),
        }
    }
}
