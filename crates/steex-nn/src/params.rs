//! Named trainable tensors in the published checkpoint layout, with PyTorch's Adam.
//!
//! A model is rebuilt from [`TrainParams::weights`] at every step (building costs a few
//! tensor handle copies), through the same loading code as a converted checkpoint, so what
//! is trained is exactly what is later loaded, under the same names. Batch-norm running
//! statistics and spectral norm's power-iteration vectors are buffers ([`is_buffer`]): Adam
//! leaves them alone, [`TrainParams::update_running_stats`] folds a training batch's
//! statistics into the former, [`TrainParams::set_buffer`] stores the latter.

use std::collections::BTreeMap;

use crate::{BatchStats, Weights, WeightsError};
use burn::tensor::{Device, Tensor, TensorData};

/// Host values of named tensors: shape and float32 values.
pub type HostTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// One tensor: its shape, its current value (a gradient-tracked leaf unless a buffer), and
/// Adam's first and second moments (`None` for buffers).
struct Entry {
    shape: Vec<usize>,
    value: Tensor<1>,
    moments: Option<(Tensor<1>, Tensor<1>)>,
}

/// Adam (`torch.optim.Adam`, no weight decay, no amsgrad) over named tensors.
pub struct TrainParams {
    entries: BTreeMap<String, Entry>,
    metadata: BTreeMap<String, String>,
    step: u64,
    /// Adam's betas (0.9, 0.999).
    pub betas: (f64, f64),
    /// Adam's epsilon (1e-8).
    pub eps: f64,
}

/// Whether `name` is a buffer, which Adam does not train: batch-norm running statistics
/// (`.running_mean`, `.running_var`) and spectral norm's vectors (`.weight_u`, `.weight_v`,
/// as `torch.nn.utils.spectral_norm` registers them).
pub fn is_buffer(name: &str) -> bool {
    [".running_mean", ".running_var", ".weight_u", ".weight_v"].iter().any(|s| name.ends_with(s))
}

fn tensor(values: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

impl TrainParams {
    /// Parameters of the given values on `device` (an autodiff device), Adam's moments at
    /// zero, no step taken.
    pub fn new(values: &HostTensors, metadata: &BTreeMap<String, String>, device: &Device) -> Self {
        let entries = values
            .iter()
            .map(|(name, (shape, v))| {
                let t = tensor(v, device);
                let entry = if is_buffer(name) {
                    Entry { shape: shape.clone(), value: t, moments: None }
                } else {
                    let zeros = Tensor::<1>::zeros([v.len()], device).inner();
                    Entry { shape: shape.clone(), value: t.require_grad(), moments: Some((zeros.clone(), zeros)) }
                };
                (name.clone(), entry)
            })
            .collect();
        TrainParams { entries, metadata: metadata.clone(), step: 0, betas: (0.9, 0.999), eps: 1e-8 }
    }

    /// The parameters as [`Weights`] a model loads from (and stays trainable).
    pub fn weights(&self) -> Result<Weights, WeightsError> {
        let t = self.entries.iter().map(|(k, p)| (k.clone(), (p.shape.clone(), p.value.clone()))).collect();
        Weights::from_tensors(t, &self.metadata)
    }

    /// The live tensors by name (flattened, with their shapes), trainable ones tracked, or
    /// all `detached` from the graph: for callers that transform some before a model loads
    /// them (spectral norm's `weight_orig / sigma`).
    pub fn tensors(&self, detached: bool) -> BTreeMap<String, (Vec<usize>, Tensor<1>)> {
        self.entries
            .iter()
            .map(|(k, p)| {
                let v = if detached { p.value.clone().detach() } else { p.value.clone() };
                (k.clone(), (p.shape.clone(), v))
            })
            .collect()
    }

    /// The current values as [`Weights`] outside the autodiff graph (for evaluation).
    pub fn weights_detached(&self) -> Result<Weights, WeightsError> {
        let t = self.entries.iter().map(|(k, p)| (k.clone(), (p.shape.clone(), p.value.clone().detach()))).collect();
        Weights::from_tensors(t, &self.metadata)
    }

    /// One Adam update from the gradients of a loss computed with [`TrainParams::weights`],
    /// as `torch.optim.Adam.step` computes it. Parameters the loss did not reach keep their
    /// values and moments.
    pub fn adam_step(&mut self, grads: &burn::tensor::Gradients, lr: f64) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let bias1 = 1.0 - b1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        let step_size = lr / bias1;
        for p in self.entries.values_mut() {
            let Some((m, v)) = p.moments.take() else { continue };
            let Some(g) = p.value.grad(grads) else {
                p.moments = Some((m, v));
                continue;
            };
            // exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            let m = m.clone() + (g.clone() - m).mul_scalar(1.0 - b1);
            let v = v.mul_scalar(b2) + g.clone().mul(g).mul_scalar(1.0 - b2);
            // denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps; p -= step_size * exp_avg / denom
            let denom = v.clone().sqrt().div_scalar(bias2_sqrt).add_scalar(self.eps);
            let value = p.value.clone().inner() - (m.clone() / denom).mul_scalar(step_size);
            p.value = Tensor::from_inner(value).require_grad();
            p.moments = Some((m, v));
        }
    }

    /// Folds a training batch's batch-norm statistics into the running ones, as PyTorch's
    /// train-mode forward does (`momentum` 0.1 by default); statistics of layers this set
    /// does not hold are an error.
    pub fn update_running_stats(&mut self, stats: &[BatchStats], momentum: f64) -> Result<(), WeightsError> {
        for s in stats {
            let (mn, vn) = (format!("{}.running_mean", s.name), format!("{}.running_var", s.name));
            let get = |n: &str| {
                self.entries
                    .get(n)
                    .map(|e| e.value.clone())
                    .ok_or_else(|| WeightsError::Missing { name: n.to_string(), shape: s.mean.dims().to_vec() })
            };
            let (mean, var) = s.update(get(&mn)?, get(&vn)?, momentum);
            self.entries.get_mut(&mn).expect("checked").value = mean;
            self.entries.get_mut(&vn).expect("checked").value = var;
        }
        Ok(())
    }

    /// Replaces the value of the buffer `name` (for example a spectral norm's `weight_u`
    /// after its power iteration), detached from any graph; an unknown name, a trained
    /// parameter or a value of another size is an error.
    pub fn set_buffer(&mut self, name: &str, value: Tensor<1>) -> Result<(), WeightsError> {
        let entry = self
            .entries
            .get_mut(name)
            .filter(|e| e.moments.is_none())
            .ok_or_else(|| WeightsError::Missing { name: name.to_string(), shape: value.dims().to_vec() })?;
        let n: usize = entry.shape.iter().product();
        if value.dims()[0] != n {
            return Err(WeightsError::Shape { name: name.to_string(), got: value.dims().to_vec(), want: vec![n] });
        }
        entry.value = value.detach();
        Ok(())
    }

    /// The gradient of the trained parameter `name` in `grads` (`None` for buffers, unknown
    /// names and parameters the loss did not reach).
    pub fn gradient(&self, name: &str, grads: &burn::tensor::Gradients) -> Option<Vec<f32>> {
        let p = self.entries.get(name).filter(|p| p.moments.is_some())?;
        Some(crate::host(p.value.grad(grads)?))
    }

    /// Adam steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Names of the trained parameters (not the buffers), in name order.
    pub fn trained_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter(|(_, e)| e.moments.is_some()).map(|(k, _)| k.as_str())
    }

    /// Number of trained scalars.
    pub fn num_trained(&self) -> usize {
        self.entries.values().filter(|p| p.moments.is_some()).map(|p| p.shape.iter().product::<usize>()).sum()
    }

    /// The metadata the weights carry.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Every tensor's shape and values, on the host.
    pub fn export(&self) -> HostTensors {
        self.entries.iter().map(|(k, p)| (k.clone(), (p.shape.clone(), crate::host(p.value.clone().inner())))).collect()
    }

    /// Adam's state on the host: `exp_avg.<name>` and `exp_avg_sq.<name>` of every trained
    /// tensor, and the step count.
    pub fn export_adam(&self) -> (HostTensors, u64) {
        let mut out = BTreeMap::new();
        for (k, p) in &self.entries {
            if let Some((m, v)) = &p.moments {
                out.insert(format!("exp_avg.{k}"), (p.shape.clone(), crate::host(m.clone())));
                out.insert(format!("exp_avg_sq.{k}"), (p.shape.clone(), crate::host(v.clone())));
            }
        }
        (out, self.step)
    }

    /// Restores Adam's state written by [`TrainParams::export_adam`]; every trained tensor
    /// must have both moments of its size.
    pub fn import_adam(&mut self, state: &HostTensors, step: u64, device: &Device) -> Result<(), WeightsError> {
        for (k, p) in self.entries.iter_mut() {
            if p.moments.is_none() {
                continue;
            }
            let n: usize = p.shape.iter().product();
            let get = |prefix: &str| {
                let name = format!("{prefix}.{k}");
                match state.get(&name) {
                    Some((_, v)) if v.len() == n => Ok(tensor(v, device).inner()),
                    Some((s, _)) => Err(WeightsError::Shape { name, got: s.clone(), want: p.shape.clone() }),
                    None => Err(WeightsError::Missing { name, shape: p.shape.clone() }),
                }
            };
            p.moments = Some((get("exp_avg")?, get("exp_avg_sq")?));
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spectral norm's vectors are buffers: Adam leaves them alone, `set_buffer` replaces
    /// them (checked by name, kind and size); trained tensors move.
    #[test]
    fn spectral_norm_vectors_are_buffers_set_by_name() {
        let device = Device::flex().autodiff();
        let values: HostTensors = [
            ("c.weight_orig".to_string(), (vec![2], vec![1.0, -2.0])),
            ("c.weight_u".to_string(), (vec![2], vec![0.6, 0.8])),
        ]
        .into();
        let mut p = TrainParams::new(&values, &BTreeMap::new(), &device);
        assert!(is_buffer("d.model1.0.0.weight_u") && is_buffer("x.weight_v") && !is_buffer("x.weight_orig"));
        assert_eq!(p.num_trained(), 2);
        let w = p.weights().unwrap();
        let loss = w.tensor::<1>("c.weight_orig", [2], &device).unwrap().sum()
            + w.tensor::<1>("c.weight_u", [2], &device).unwrap().sum();
        p.adam_step(&loss.backward(), 0.1);
        let out = p.export();
        assert_eq!(out["c.weight_u"].1, vec![0.6, 0.8]);
        assert!((out["c.weight_orig"].1[0] - 0.9).abs() < 1e-6);
        p.set_buffer("c.weight_u", Tensor::<1>::from_floats([1.0, 0.0], &device)).unwrap();
        assert_eq!(p.export()["c.weight_u"].1, vec![1.0, 0.0]);
        let e = p.set_buffer("c.weight_u", Tensor::<1>::zeros([3], &device)).unwrap_err();
        assert!(e.to_string().contains("c.weight_u"), "{e}");
        assert!(p.set_buffer("c.weight_orig", Tensor::<1>::zeros([2], &device)).is_err());
        assert!(p.set_buffer("nope.weight_u", Tensor::<1>::zeros([2], &device)).is_err());
    }
}
