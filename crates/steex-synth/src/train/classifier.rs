//! The decision model's training: real scenes and the generator's outputs with the
//! non-causal codes swapped, noised and attacked, against graded targets.

use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Device, Tensor, TensorData};
use steex_classifier::DecisionModel;
use steex_classifier::resnet::ResNet;
use steex_sean::{NoiseMode, SeanGenerator};

use super::augment::*;
use super::generator::*;
use super::*;
use crate::params::TrainParams;
use crate::scene::{CAUSAL, HEIGHT, LAMP, Scene, SceneSpec, WIDTH};
use crate::world;

/// Steepness of the graded targets the decision model learns: `sigmoid(GRADE * redness)`
/// of the lamp's colour ([`crate::scene::redness`]).
pub const GRADE: f32 = 6.0;

/// The decision model's targets `[B, 1]` for scenes: the rule, graded by how far the lamp's
/// hue is from the boundary (above 0.5 exactly when the lamp is red). A model trained on
/// them decides by the rule, and its score rises as the lamp's hue nears red, so its
/// gradient shows the way from green to red (with hard labels it is flat and confident
/// everywhere around green, and an explanation stalls there).
pub fn graded_targets(scenes: &[Scene], device: &Device) -> Tensor<2> {
    let y: Vec<f32> = scenes
        .iter()
        .map(|s| 1.0 / (1.0 + (-GRADE * crate::scene::redness(s.spec.appearance[LAMP].colour)).exp()))
        .collect();
    Tensor::from_data(TensorData::new(y, [scenes.len(), 1]), device)
}

/// Trains the decision model on the rule ([`graded_targets`]). With `generator`, part of
/// every batch is made by the generator from the scenes' codes, with non-causal codes
/// swapped between scenes and perturbed ([`ClassifierAugment`]): the model sees what the
/// explainer will show it, and learns that only the lamp's code decides.
pub fn train_classifier(
    cfg: &TrainConfig,
    generator: Option<(&SeanGenerator, ClassifierAugment)>,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<TrainParams, TrainError> {
    train_loop(
        world::classifier_spec(),
        cfg,
        device,
        &mut |p, step| {
            let load = |w: &steex_nn::Weights| {
                ResNet::load(w, world::classifier_config(), 1, device).map_err(|e| TrainError::Model(e.to_string()))
            };
            let c = load(&p.weights()?)?;
            let specs: Vec<SceneSpec> = seeds(cfg, step).iter().map(|&s| SceneSpec::sample_for_training(s)).collect();
            let real: Vec<Scene> = specs.iter().map(|s| s.render()).collect();
            let Some((g, aug)) = generator else {
                let b = batch_of(&real, device);
                return Ok(bce(c.logits(b.images), graded_targets(&real, device)));
            };
            let n = ((specs.len() as f64 * aug.generated).round() as usize).min(specs.len());
            let mut rng = step_rng(cfg, step);
            let plan = SwapPlan::random(n, aug.swap, &mut rng).with_blends(aug.blend, &mut rng);
            let gen_in = batch_of(&real[..n], device);
            let gen_labels = graded_targets(&plan.apply(&specs[..n]), device);
            let mask = g.mask(gen_in.labels).map_err(model_err)?;
            let z = plan.mix_codes(g.encode(gen_in.images, &mask).map_err(model_err)?.detach());
            let z = z.clone() + code_noise(&z, aug.noise, &mut rng);
            let generated = g.generate(&mask, z, NoiseMode::Off).map_err(model_err)?.detach();
            let rest = batch_of(&real[n..], device);
            let images = Tensor::cat(vec![generated, rest.images], 0);
            let stop = Tensor::cat(vec![gen_labels, graded_targets(&real[n..], device)], 0);
            let (radius, pgd_steps) = aug.adversarial;
            let images = if radius > 0.0 && pgd_steps > 0 {
                // The attack's backward passes must not reach the training graph: each
                // builds the model afresh from the detached values.
                let free = non_causal_pixels(&specs, device);
                attack(&mut || load(&p.weights_detached()?), images, stop.clone(), free, radius, pgd_steps)?
            } else {
                images
            };
            Ok(bce(c.logits(images), stop))
        },
        progress,
    )
}

/// `[B, 1, H, W]`: 1 on pixels outside the causal regions of `specs`' layouts.
fn non_causal_pixels(specs: &[SceneSpec], device: &Device) -> Tensor<4> {
    let v: Vec<f32> = specs
        .iter()
        .flat_map(|s| s.labels().into_iter().map(|k| (!CAUSAL.contains(&(k as usize))) as u8 as f32))
        .collect();
    Tensor::from_data(TensorData::new(v, [specs.len(), 1, HEIGHT, WIDTH]), device)
}

/// Projected sign-gradient ascent of the decision loss on the pixels where `free` is 1,
/// within `radius` (L-infinity) of `images`, with the model `model()` builds; returns the
/// perturbed images (detached).
fn attack(
    model: &mut dyn FnMut() -> Result<ResNet, TrainError>,
    images: Tensor<4>,
    stop: Tensor<2>,
    free: Tensor<4>,
    radius: f64,
    steps: usize,
) -> Result<Tensor<4>, TrainError> {
    let step_size = 2.5 * radius / steps as f64;
    let clean = images.detach();
    let mut x = clean.clone();
    for _ in 0..steps {
        let xg = x.clone().require_grad();
        let grads = bce(model()?.logits(xg.clone()), stop.clone().detach()).backward();
        let Some(g) = xg.grad(&grads) else { break };
        let g = Tensor::<4>::from_inner(g);
        let delta = (x - clean.clone() + g.sign() * free.clone().mul_scalar(step_size)).clamp(-radius, radius);
        x = (clean.clone() + delta).clamp(-1.0, 1.0).detach();
    }
    Ok(x)
}

/// Share of the first `n` held-out scenes (seeds from [`crate::scene::HELD_OUT_SEED`]) that
/// the decision model decides as the rule does (logit above 0 exactly for `stop`): on the
/// real scenes, and with a generator also on their reconstructions.
pub fn held_out_accuracy(
    classifier: &impl DecisionModel,
    generator: Option<&SeanGenerator>,
    n: usize,
    device: &Device,
) -> Result<(f64, Option<f64>), TrainError> {
    let host = |t: Tensor<2>| Ok::<_, TrainError>(steex_nn::host(t));
    let (mut real, mut rec) = (0usize, 0usize);
    let seeds: Vec<u64> = (0..n as u64).map(|i| crate::scene::HELD_OUT_SEED + i).collect();
    for chunk in seeds.chunks(50) {
        let b = batch(chunk, device);
        let truth = host(b.stop)?;
        let right = |logits: Vec<f32>| logits.iter().zip(&truth).filter(|(l, t)| (**l > 0.0) == (**t > 0.5)).count();
        real += right(host(classifier.logits(b.images.clone()))?);
        if let Some(g) = generator {
            rec += right(host(classifier.logits(reconstruct(g, b.images, b.labels)?))?);
        }
    }
    let share = |k: usize| k as f64 / n.max(1) as f64;
    Ok((share(real), generator.map(|_| share(rec))))
}

/// Binary cross-entropy from logits `x` and targets `y` in [0, 1], averaged:
/// `max(x, 0) - x y + log(1 + exp(-|x|))`.
pub fn bce(x: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
    (relu(x.clone()) - x.clone() * y + softplus(x.abs().neg(), 1.0)).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::scene;

    #[test]
    fn graded_targets_decide_by_the_rule() {
        let device = Device::flex();
        let scenes: Vec<Scene> = (0..200).map(|s| SceneSpec::sample_for_training(s).render()).collect();
        let y = graded_targets(&scenes, &device).into_data().try_into_vec::<f32>().unwrap();
        let mut graded = 0;
        for (s, y) in scenes.iter().zip(&y) {
            assert_eq!(*y > 0.5, s.stop, "{:?} -> {y}", s.spec.appearance[LAMP].colour);
            graded += (0.05..0.95).contains(y) as usize;
        }
        // Lamps of any hue: some targets lie between the classes.
        assert!(graded > 10, "{graded}");
    }

    /// A decision model with one constant logit.
    struct Constant(f32);

    impl DecisionModel for Constant {
        fn logits(&self, images: Tensor<4>) -> Tensor<2> {
            let b = images.dims()[0];
            Tensor::full([b, 1], self.0, &images.device())
        }
        fn num_outputs(&self) -> usize {
            1
        }
    }

    #[test]
    fn held_out_accuracy_counts_the_rule_across_chunks() {
        let device = Device::flex();
        let n = 70; // two chunks, the second partial
        let stops = (0..n as u64).filter(|i| scene(crate::scene::HELD_OUT_SEED + i).stop).count() as f64 / n as f64;
        assert!(stops > 0.0 && stops < 1.0);
        let (always_stop, rec) = held_out_accuracy(&Constant(1.0), None, n, &device).unwrap();
        let (never_stop, _) = held_out_accuracy(&Constant(-1.0), None, n, &device).unwrap();
        assert_eq!(rec, None);
        assert!((always_stop - stops).abs() < 1e-12, "{always_stop} vs {stops}");
        assert!((never_stop - (1.0 - stops)).abs() < 1e-12, "{never_stop} vs {}", 1.0 - stops);
    }
}
