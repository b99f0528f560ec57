//! Named trainable tensors in the published checkpoint layout, with Adam.
//!
//! A model is rebuilt from [`ParamSet::weights`] at every step (building costs a few tensor
//! handle copies), through the same loading code as a converted checkpoint, so what is
//! trained is exactly what is later loaded, under the same names.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use steex_nn::{Weights, WeightsError};

/// One parameter: its shape, its current value (a gradient-tracked leaf), Adam's moments.
struct Param {
    shape: Vec<usize>,
    value: Tensor<1>,
    /// `None` for buffers (batch-norm running statistics), which are not trained.
    moments: Option<(Tensor<1>, Tensor<1>)>,
}

/// Adam (PyTorch's algorithm, no weight decay) over named tensors.
pub struct ParamSet {
    params: BTreeMap<String, Param>,
    metadata: BTreeMap<String, String>,
    step: i32,
    /// Adam's betas.
    pub betas: (f64, f64),
    /// Adam's epsilon.
    pub eps: f64,
}

/// Whether `name` is a buffer that training leaves alone.
fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

impl ParamSet {
    /// Fresh parameters of the given names and shapes on `device` (an autodiff device):
    /// PyTorch's default initialisation (`U(-k, k)`, `k = 1/sqrt(fan_in)`), batch norms as the
    /// identity (weight 1, bias 0, running mean 0, running variance 1: training keeps them so,
    /// the networks are trained without normalisation), SEAN's blending weights and noise
    /// scales 0 as SEAN initialises them. Deterministic for a seed.
    pub fn init(
        shapes: &BTreeMap<String, Vec<usize>>,
        metadata: &BTreeMap<String, String>,
        seed: u64,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let random = Weights::random(shapes, &BTreeMap::new(), seed);
        let batch_norms: Vec<String> =
            shapes.keys().filter_map(|n| n.strip_suffix(".running_mean").map(|p| format!("{p}."))).collect();
        let mut params = BTreeMap::new();
        for (name, shape) in shapes {
            let mut values = random.values(name, shape)?;
            let fill = if name.ends_with("running_mean") || name.ends_with("noise_var") || name.contains(".blending_") {
                Some(0.0)
            } else if name.ends_with("running_var") {
                Some(1.0)
            } else if batch_norms.iter().any(|p| name.starts_with(p.as_str())) {
                Some(if name.ends_with(".weight") { 1.0 } else { 0.0 })
            } else {
                None
            };
            if let Some(v) = fill {
                values.fill(v);
            }
            let n = values.len();
            let t = Tensor::<1>::from_data(TensorData::new(values, [n]), device);
            let (value, moments) = if is_buffer(name) {
                (t, None)
            } else {
                let zeros = Tensor::<1>::zeros([n], device).inner();
                (t.require_grad(), Some((zeros.clone(), zeros)))
            };
            params.insert(name.clone(), Param { shape: shape.clone(), value, moments });
        }
        Ok(ParamSet { params, metadata: metadata.clone(), step: 0, betas: (0.9, 0.999), eps: 1e-8 })
    }

    /// The parameters as [`Weights`] a model loads from (and stays trainable).
    pub fn weights(&self) -> Result<Weights, WeightsError> {
        let t = self.params.iter().map(|(k, p)| (k.clone(), (p.shape.clone(), p.value.clone()))).collect();
        Weights::from_tensors(t, &self.metadata)
    }

    /// The current values as [`Weights`] outside the autodiff graph (for passes whose
    /// gradients must not reach the parameters).
    pub fn weights_detached(&self) -> Result<Weights, WeightsError> {
        let t = self.params.iter().map(|(k, p)| (k.clone(), (p.shape.clone(), p.value.clone().detach()))).collect();
        Weights::from_tensors(t, &self.metadata)
    }

    /// One Adam update from the gradients of a loss computed with [`ParamSet::weights`].
    /// Parameters the loss did not reach are left as they are.
    pub fn adam_step(&mut self, grads: &burn::tensor::Gradients, lr: f64) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let c1 = 1.0 - b1.powi(self.step);
        let c2 = 1.0 - b2.powi(self.step);
        for p in self.params.values_mut() {
            let Some((m, v)) = p.moments.take() else { continue };
            let Some(g) = p.value.grad(grads) else {
                p.moments = Some((m, v));
                continue;
            };
            let m = m.mul_scalar(b1).add(g.clone().mul_scalar(1.0 - b1));
            let v = v.mul_scalar(b2).add(g.clone().mul(g).mul_scalar(1.0 - b2));
            let update = m.clone().div_scalar(c1).div(v.clone().div_scalar(c2).sqrt().add_scalar(self.eps));
            let value = p.value.clone().inner().sub(update.mul_scalar(lr));
            p.value = Tensor::from_inner(value).require_grad();
            p.moments = Some((m, v));
        }
    }

    /// The gradient of the trained parameter `name` in `grads` (`None` for buffers, unknown
    /// names and parameters the loss did not reach).
    pub fn gradient(&self, name: &str, grads: &burn::tensor::Gradients) -> Option<Vec<f32>> {
        let p = self.params.get(name).filter(|p| p.moments.is_some())?;
        Some(steex_nn::host(p.value.grad(grads)?))
    }

    /// Names of the trained parameters.
    pub fn trained_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().filter(|(_, p)| p.moments.is_some()).map(|(k, _)| k.as_str())
    }

    /// Number of trained scalars.
    pub fn num_trained(&self) -> usize {
        self.params.values().filter(|p| p.moments.is_some()).map(|p| p.shape.iter().product::<usize>()).sum()
    }

    /// The metadata the weights carry.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Every tensor's shape and values, on the host (for writing a file).
    pub fn export(&self) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        self.params
            .iter()
            .map(|(k, p)| {
                let v = steex_nn::host(p.value.clone().inner());
                (k.clone(), (p.shape.clone(), v))
            })
            .collect()
    }
}
