//! STEEX counterfactual explanations (Jacob et al., ECCV 2022) on any burn backend.
//!
//! [`explain`] takes a generator steered by per-region style codes ([`StyleGenerator`],
//! implemented by SEAN) and a decision model ([`steex_classifier::DecisionModel`], any
//! differentiable classifier), and optimises the codes of a batch of images until the
//! decision flips, optionally moving only the regions named ([`ExplainSettings::regions`]).
//! [`presets`] holds the published settings, region and attribute names.

pub mod adam;
pub mod explain;
pub mod generator;
pub mod presets;
pub mod target;

pub use adam::AdamConfig;
pub use explain::{
    ExplainError, ExplainSettings, Explanation, ImageResult, Optimisation, StepReport, explain, explain_steered,
};
pub use generator::StyleGenerator;
pub use presets::Preset;
pub use target::{AttributeTarget, Objective};
