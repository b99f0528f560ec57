//! The STEEX optimisation loop: move the style codes so the decision model's output for one
//! attribute flips, while staying close to the query's codes.

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use steex_classifier::DecisionModel;
use steex_nn::host;
use steex_sean::NoiseMode;

use crate::adam::{Adam, AdamConfig};
use crate::generator::StyleGenerator;
use crate::target::Objective;

/// What to explain and how (defaults: the published settings, with seeded noise). Build it
/// from command options with [`Optimisation::settings`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExplainSettings {
    /// Decision output under study.
    pub attribute: usize,
    /// Optimisation steps (Adam updates), 100 published.
    pub steps: usize,
    /// Adam settings (lr 0.01, betas 0.9/0.999, eps 1e-8).
    pub adam: AdamConfig,
    /// Weight of the proximity term `sum_j ||z_j - z0_j||^2` (0.3 published).
    pub lambda_prox: f64,
    /// ACE noise during the optimisation and for the images produced.
    #[serde(serialize_with = "noise_str", deserialize_with = "noise_parse")]
    pub noise: NoiseMode,
    /// Stop an image once its decision has flipped and stayed flipped for this many steps.
    pub early_stop: Option<usize>,
    /// Target decision (0 or 1); `None`: the opposite of the decision on the query.
    pub target: Option<u8>,
    /// Label ids whose codes may move (region-targeted); `None`: all of them.
    pub regions: Option<Vec<usize>>,
    /// What is asked of the decision model; default: the published single attribute
    /// (`attribute`, `target`). Not written when it is the default.
    #[serde(skip_serializing_if = "Objective::is_published")]
    pub objective: Objective,
}

fn noise_str<S: serde::Serializer>(n: &NoiseMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.to_string())
}

fn noise_parse<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NoiseMode, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// How the codes are optimised, as every command and the demo give it: the one way to an
/// [`ExplainSettings`] ([`Optimisation::settings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Optimisation {
    /// Adam updates.
    pub steps: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Adam's denominator epsilon; `None`: the published 1e-8.
    pub adam_eps: Option<f64>,
    /// Weight of the proximity term.
    pub lambda_prox: f64,
    /// ACE noise.
    pub noise: NoiseMode,
    /// Stop an image once flipped for this many steps.
    pub early_stop: Option<usize>,
    /// Target decision; `None`: the opposite of the query's.
    pub target: Option<u8>,
}

impl Optimisation {
    /// The settings explaining output `attribute`, moving only `regions` (`None`: all).
    pub fn settings(&self, attribute: usize, regions: Option<Vec<usize>>) -> ExplainSettings {
        let mut adam = AdamConfig { lr: self.lr, ..AdamConfig::default() };
        if let Some(eps) = self.adam_eps {
            adam.eps = eps;
        }
        ExplainSettings {
            attribute,
            steps: self.steps,
            adam,
            lambda_prox: self.lambda_prox,
            noise: self.noise,
            early_stop: self.early_stop,
            target: self.target,
            regions,
            objective: Objective::Attribute,
        }
    }
}

impl Default for ExplainSettings {
    fn default() -> Self {
        ExplainSettings {
            attribute: 0,
            steps: 100,
            adam: AdamConfig::default(),
            lambda_prox: 0.3,
            noise: NoiseMode::Seeded(0),
            early_stop: None,
            target: None,
            regions: None,
            objective: Objective::Attribute,
        }
    }
}

/// What the explainer refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExplainError {
    /// A setting does not fit the models.
    #[error("{0}")]
    Settings(String),
    /// A model refused its input.
    #[error("{0}")]
    Model(String),
}

/// Progress after one forward pass of the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Forward number, 1-based (the codes had `step - 1` updates).
    pub step: usize,
    /// Steps requested.
    pub steps: usize,
    /// Per image: decision loss at this forward (images no longer optimised are not
    /// computed again: they keep the values of their last forward, here and below).
    pub loss_decision: Vec<f32>,
    /// Per image: proximity loss (with its lambda).
    pub loss_proximity: Vec<f32>,
    /// Per image: probability of the attribute (see [`Objective::score`]).
    pub score: Vec<f32>,
    /// Per image: still being optimised.
    pub active: Vec<bool>,
}

/// The explanation of one image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageResult {
    /// Decision logits on the query.
    pub initial_logits: Vec<f32>,
    /// Sigmoids of `initial_logits`.
    pub initial_scores: Vec<f32>,
    /// Decision logits on the counterfactual.
    pub final_logits: Vec<f32>,
    /// Sigmoids of `final_logits`.
    pub final_scores: Vec<f32>,
    /// Probabilities on the query: the softmax of `initial_logits` for a softmax model,
    /// their sigmoids otherwise.
    pub initial_probabilities: Vec<f32>,
    /// Probabilities on the counterfactual, as `initial_probabilities`.
    pub final_probabilities: Vec<f32>,
    /// The decision asked for (0 or 1; see [`Objective::recorded_target`]).
    pub target: u8,
    /// The objective is reached on the counterfactual (published: `|final_score[attribute]
    /// - target| < 0.5`; see [`Objective::reached`]).
    pub success: bool,
    /// Decision loss at the final codes.
    pub loss_decision: f32,
    /// `lambda * sum_j ||z_j - z0_j||^2` at the final codes.
    pub loss_proximity: f32,
    /// Adam updates applied to this image.
    pub steps_run: usize,
    /// Set when optimisation stopped on a non-finite loss, gradient or code.
    pub failure: Option<String>,
}

/// The result of [`explain`] for a batch.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// One result per image.
    pub images: Vec<ImageResult>,
    /// Codes shape `[B, L, S]`.
    pub codes_shape: [usize; 3],
    /// Encoded codes, row-major `[B, L, S]`.
    pub z_initial: Vec<f32>,
    /// Optimised codes, row-major `[B, L, S]`; rows outside the regions equal `z_initial`
    /// bit for bit.
    pub z_final: Vec<f32>,
    /// The generator on `z_initial` (`[B, 3, H, W]`, detached).
    pub reconstruction: Tensor<4>,
    /// The generator on `z_final` (`[B, 3, H, W]`, detached).
    pub counterfactual: Tensor<4>,
}

/// A model's refusal as [`ExplainError::Model`].
fn model_err(e: impl std::fmt::Display) -> ExplainError {
    ExplainError::Model(e.to_string())
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Explains a batch: `images` `[B, 3, H, W]` in [-1, 1] with their layout `mask`, on the
/// device the models were built on (an autodiff device). `observer` sees every forward.
///
/// The loop is the published one (Adam on the codes, loss `BCE + lambda * proximity`
/// summed over the batch), with one more forward after the last update so the
/// counterfactual, its scores and both losses are those of the final codes.
pub fn explain<G, D>(
    generator: &G,
    model: &D,
    images: Tensor<4>,
    mask: &G::Mask,
    settings: &ExplainSettings,
    observer: &mut dyn FnMut(&StepReport),
) -> Result<Explanation, ExplainError>
where
    G: StyleGenerator,
    D: DecisionModel + ?Sized,
{
    explain_steered(generator, model, images, mask, settings, &mut |r, _| {
        observer(r);
        ControlFlow::Continue(())
    })
}

/// [`explain`] with an observer that also sees the codes after each step's update
/// (row-major `[B, L, S]`, as [`Explanation::z_final`]) and may stop the optimisation:
/// `ControlFlow::Break` ends the loop after that step, and the explanation is made of the
/// codes reached so far (each image's `steps_run` says how far it went), as if the step
/// budget had ended there. `explain` is this with an observer that never stops.
pub fn explain_steered<G, D>(
    generator: &G,
    model: &D,
    images: Tensor<4>,
    mask: &G::Mask,
    settings: &ExplainSettings,
    observer: &mut dyn FnMut(&StepReport, &[f32]) -> ControlFlow<()>,
) -> Result<Explanation, ExplainError>
where
    G: StyleGenerator,
    D: DecisionModel + ?Sized,
{
    let device: Device = images.device();
    let [b, _, h, w] = images.dims();
    let k = model.num_outputs();
    let a = settings.attribute;
    let objective = &settings.objective;
    let kind = model.output_kind();
    objective.check(k, kind, a).map_err(ExplainError::Settings)?;
    if let Some(t) = settings.target
        && t > 1
    {
        return Err(ExplainError::Settings(format!("target {t}: expected 0 or 1")));
    }
    model.check_input_size(h, w).map_err(model_err)?;

    // Decision on the query, target, initial codes.
    let initial_logits = host(model.logits(images.clone().detach()));
    let targets: Vec<u8> = (0..b)
        .map(|i| match objective {
            Objective::Attribute => {
                settings.target.unwrap_or(if sigmoid(initial_logits[i * k + a]) < 0.5 { 1 } else { 0 })
            }
            _ => objective.recorded_target(0),
        })
        .collect();
    let z0 = generator.encode(images.detach(), mask).map_err(model_err)?.detach();
    let [_, l, s] = z0.dims();
    if let Some(r) = &settings.regions
        && let Some(bad) = r.iter().find(|&&j| j >= l)
    {
        return Err(ExplainError::Settings(format!(
            "region id {bad} is out of range: the generator has {l} labels (0..={})",
            l - 1
        )));
    }
    let z_initial: Vec<f32> = host(z0.clone());
    let reconstruction = generator.generate(mask, z0.clone(), settings.noise).map_err(model_err)?.detach();

    let trainable: Vec<bool> = (0..l).map(|j| settings.regions.as_ref().is_none_or(|r| r.contains(&j))).collect();
    let row = s;
    let per_image = l * s;
    let target_t =
        Tensor::<1>::from_data(TensorData::new(targets.iter().map(|&t| t as f32).collect::<Vec<_>>(), [b]), &device);

    let mut z = z_initial.clone();
    let mut adam = Adam::new(settings.adam, z.len());
    let mut active = vec![true; b];
    let mut steps_run = vec![0usize; b];
    let mut flipped_for = vec![0usize; b];
    let mut failure: Vec<Option<String>> = vec![None; b];
    let lambda = settings.lambda_prox as f32;

    // One forward of `n` images at codes `z` (`[n, L, S]` flat) under `mask`, `z0` and
    // `target` of those images: image, logits [n, K], decision and proximity losses [n].
    type Fwd = (Tensor<4>, Tensor<2>, Tensor<1>, Tensor<1>, Tensor<3>);
    let forward =
        |mask: &G::Mask, z0: &Tensor<3>, target: &Tensor<1>, z: &[f32], grad: bool| -> Result<Fwd, ExplainError> {
            let n = z.len() / per_image;
            let zt = Tensor::<3>::from_data(TensorData::new(z.to_vec(), [n, l, s]), &device);
            let zt = if grad { zt.require_grad() } else { zt };
            let img = generator.generate(mask, zt.clone(), settings.noise).map_err(model_err)?;
            let logits = model.logits(img.clone());
            let dec = objective.loss(logits.clone(), a, target.clone());
            let prox = (zt.clone() - z0.clone()).square().sum_dim(2).sum_dim(1).reshape([n]).mul_scalar(lambda);
            Ok((img, logits, dec, prox, zt))
        };

    // The images still optimised; once some stop, the others go on as a smaller batch
    // (their layouts, codes and targets selected once per change).
    let mut live: Vec<usize> = (0..b).collect();
    let mut live_batch: Option<(G::Mask, Tensor<3>, Tensor<1>)> = None;
    let mut report = StepReport {
        step: 0,
        steps: settings.steps,
        loss_decision: vec![0.0; b],
        loss_proximity: vec![0.0; b],
        score: vec![0.0; b],
        active: active.clone(),
    };
    let mut g = vec![0f32; z.len()];
    for step in 1..=settings.steps {
        let now: Vec<usize> = (0..b).filter(|&i| active[i]).collect();
        if now.is_empty() {
            break;
        }
        if now != live {
            let idx = Tensor::<1, burn::tensor::Int>::from_ints(
                now.iter().map(|&i| i as i64).collect::<Vec<_>>().as_slice(),
                &device,
            );
            live_batch = Some((
                generator.select(mask, &now),
                z0.clone().select(0, idx.clone()),
                target_t.clone().select(0, idx),
            ));
            live = now;
        }
        let (m, z0_live, target_live) = match &live_batch {
            Some((m, z0l, tl)) => (m, z0l, tl),
            None => (mask, &z0, &target_t),
        };
        let z_live: Vec<f32> =
            live.iter().flat_map(|&i| z[i * per_image..(i + 1) * per_image].iter().copied()).collect();
        let (_, logits, dec, prox, zt) = forward(m, z0_live, target_live, &z_live, true)?;
        let loss = (dec.clone() + prox.clone()).sum();
        let grads = loss.backward();
        let g_live: Vec<f32> =
            host(zt.grad(&grads).ok_or_else(|| ExplainError::Model("no gradient reached the style codes".into()))?);
        let stats = host(Tensor::cat(
            vec![logits.detach(), dec.detach().reshape([live.len(), 1]), prox.detach().reshape([live.len(), 1])],
            1,
        ));
        report.step = step;
        report.active = active.clone();
        for (r, &i) in live.iter().enumerate() {
            let st = &stats[r * (k + 2)..(r + 1) * (k + 2)];
            let (row_logits, d, p) = (&st[..k], st[k], st[k + 1]);
            report.loss_decision[i] = d;
            report.loss_proximity[i] = p;
            report.score[i] = objective.score(row_logits, a);
            let gi = &g_live[r * per_image..(r + 1) * per_image];
            let finite = row_logits.iter().all(|v| v.is_finite()) && d.is_finite() && p.is_finite();
            if !finite || gi.iter().any(|v| !v.is_finite()) {
                failure[i] =
                    Some(format!("non-finite loss or gradient at step {step}; optimisation of this image stopped"));
                active[i] = false;
                continue;
            }
            let flipped = objective.reached(row_logits, a, targets[i]);
            flipped_for[i] = if flipped { flipped_for[i] + 1 } else { 0 };
            if settings.early_stop.is_some_and(|kk| kk > 0 && flipped_for[i] >= kk) {
                active[i] = false;
                continue;
            }
            g[i * per_image..(i + 1) * per_image].copy_from_slice(gi);
            for (j, _) in trainable.iter().enumerate().filter(|(_, t)| **t) {
                let start = i * per_image + j * row;
                adam.update(&mut z, &g, start..start + row, steps_run[i] + 1);
            }
            steps_run[i] += 1;
            if z[i * per_image..(i + 1) * per_image].iter().any(|v| !v.is_finite()) {
                failure[i] =
                    Some(format!("non-finite style code after step {step}; optimisation of this image stopped"));
                active[i] = false;
            }
        }
        if observer(&report, &z).is_break() {
            break;
        }
    }

    // Images that failed go back to their last finite codes: the initial ones.
    for i in 0..b {
        if failure[i].is_some() && z[i * per_image..(i + 1) * per_image].iter().any(|v| !v.is_finite()) {
            z[i * per_image..(i + 1) * per_image].copy_from_slice(&z_initial[i * per_image..(i + 1) * per_image]);
        }
    }

    // The counterfactual: one more forward at the final codes, of the whole batch.
    let (counterfactual, logits, dec, prox, _) = forward(mask, &z0, &target_t, &z, false)?;
    let counterfactual = counterfactual.detach();
    let stats =
        host(Tensor::cat(vec![logits.detach(), dec.detach().reshape([b, 1]), prox.detach().reshape([b, 1])], 1));
    let images_out = (0..b)
        .map(|i| {
            let r = &stats[i * (k + 2)..(i + 1) * (k + 2)];
            let final_logits = r[..k].to_vec();
            let final_scores: Vec<f32> = final_logits.iter().map(|&x| sigmoid(x)).collect();
            let il = initial_logits[i * k..(i + 1) * k].to_vec();
            ImageResult {
                initial_scores: il.iter().map(|&x| sigmoid(x)).collect(),
                initial_probabilities: kind.probabilities(&il),
                final_probabilities: kind.probabilities(&final_logits),
                success: failure[i].is_none() && objective.reached(&final_logits, a, targets[i]),
                initial_logits: il,
                final_logits,
                final_scores,
                target: targets[i],
                loss_decision: r[k],
                loss_proximity: r[k + 1],
                steps_run: steps_run[i],
                failure: failure[i].clone(),
            }
        })
        .collect();
    Ok(Explanation {
        images: images_out,
        codes_shape: [b, l, s],
        z_initial,
        z_final: z,
        reconstruction,
        counterfactual,
    })
}
