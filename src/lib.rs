//! STEEX in Rust: semantic counterfactual explanations of image classifiers, natively in
//! burn.
//!
//! This facade re-exports the workspace's crates so that one dependency gives everything:
//!
//! - [`weights_convert`]: import the published PyTorch checkpoints into safetensors, safely.
pub use weights_convert;
