//! Evaluation metrics for counterfactual explanations (spec section 6), with no file I/O:
//!
//! - success rate, overall and per attribute ([`SuccessTally`]);
//! - proximity: mean L1 / L2 pixel distance, style-code distance and regions changed
//!   ([`proximity`], [`code_change`], [`ProximityTally`]);
//! - the Frechet distance between two feature sets, as `pytorch_fid.fid_score` computes it
//!   ([`frechet_distance`], [`fid_from_features`], [`mean_and_covariance`]);
//! - face verification accuracy ([`fva`]: share of pairs whose embeddings have cosine
//!   similarity above 0.5; the published script tests the cosine *distance*, which inverts it);
//! - mean number of attribute changes ([`attribute_changes`], [`mnac`]).
//!
//! Everything takes plain slices, so callers (the `steex metrics` command, the demo) decide
//! where the numbers come from. [`Summary`] gathers the final figures.
//!
//! [`models`] holds the networks behind FID, FVA and MNAC (pytorch-fid's Inception-v3, the
//! VGGFace2 face embedder, the attribute oracle), in burn.

mod error;
mod fid;
mod fva;
mod mnac;
pub mod models;
mod proximity;
mod success;
mod summary;
#[cfg(test)]
mod tests;

pub use error::{MetricsError, Result};
pub use fid::{fid_from_features, frechet_distance, mean_and_covariance};
pub use fva::{FVA_THRESHOLD, cosine_similarity, fva, fva_at};
pub use mnac::{attribute_changes, mnac};
pub use proximity::{CodeChange, Proximity, ProximityTally, code_change, proximity};
pub use success::SuccessTally;
pub use summary::Summary;
