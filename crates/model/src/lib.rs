//! The models of the study on burn: today the backend choice and checkpoint → tensor loading that every model
//! path builds on. The Llama/Mistral decoder, CLIP ViT, projector and LLaVA 1.5/NeXT arrive with their own
//! issues (see the README's status table); nothing here pretends to run a model yet.

pub mod backend;
pub mod error;
pub mod load;

pub use backend::{BackendKind, CpuBackend};
pub use error::{ModelError, Result};
pub use load::{WeightDtype, load_float};
