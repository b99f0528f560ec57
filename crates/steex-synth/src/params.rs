//! The synthetic world's trainable parameters: [`steex_nn::TrainParams`] (named tensors in
//! the published checkpoint layout, with PyTorch's Adam, the trainers' one implementation)
//! initialised as the bundled models were ([`init`]).
//!
//! A model is rebuilt from [`TrainParams::weights`] at every step (building costs a few
//! tensor handle copies), through the same loading code as a converted checkpoint, so what
//! is trained is exactly what is later loaded, under the same names.

use std::collections::BTreeMap;

use burn::tensor::Device;
pub use steex_nn::TrainParams;
use steex_nn::{HostTensors, Weights, WeightsError};

/// Fresh parameters of the given names and shapes on `device` (an autodiff device), with
/// PyTorch's Adam ([`TrainParams`]): PyTorch's default initialisation (`U(-k, k)`,
/// `k = 1/sqrt(fan_in)`), batch norms as the identity (weight 1, bias 0, running mean 0,
/// running variance 1: training keeps the running statistics so, the networks are trained
/// without normalisation), SEAN's blending weights and noise scales 0 as SEAN initialises
/// them. Deterministic for a seed.
pub fn init(
    shapes: &BTreeMap<String, Vec<usize>>,
    metadata: &BTreeMap<String, String>,
    seed: u64,
    device: &Device,
) -> Result<TrainParams, WeightsError> {
    let random = Weights::random(shapes, &BTreeMap::new(), seed);
    let batch_norms: Vec<String> =
        shapes.keys().filter_map(|n| n.strip_suffix(".running_mean").map(|p| format!("{p}."))).collect();
    let mut values: HostTensors = BTreeMap::new();
    for (name, shape) in shapes {
        let mut v = random.values(name, shape)?;
        let fill = if name.ends_with("running_mean") || name.ends_with("noise_var") || name.contains(".blending_") {
            Some(0.0)
        } else if name.ends_with("running_var") {
            Some(1.0)
        } else if batch_norms.iter().any(|p| name.starts_with(p.as_str())) {
            Some(if name.ends_with(".weight") { 1.0 } else { 0.0 })
        } else {
            None
        };
        if let Some(x) = fill {
            v.fill(x);
        }
        values.insert(name.clone(), (shape.clone(), v));
    }
    Ok(TrainParams::new(&values, metadata, device))
}
