//! Decision models for STEEX, in burn: torchvision's DenseNet (DenseNet121 is the published
//! decision model) and ResNet-18/34/50/101/152, with the checkpoint names of the published
//! wrappers, and the [`DecisionModel`] trait the explainer needs, for your own models too.
//!
//! Outputs are logits `[B, K]`; probabilities are their sigmoids (multi-label, as published)
//! or their softmax (one multi-class decision), as [`DecisionModel::output_kind`] says.

pub mod any;
pub mod decision;
pub mod densenet;
pub mod error;
pub mod resnet;

pub use any::AnyClassifier;
pub use decision::{DecisionModel, OutputKind, default_output_names};
pub use densenet::{DenseNet, DenseNetConfig};
pub use error::ClassifierError;
pub use resnet::{BlockKind, ResNet, ResNetBackbone, ResNetConfig};
