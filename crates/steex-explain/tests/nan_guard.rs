//! The numerical guard: an image whose loss becomes non-finite during optimisation is
//! stopped and reported failed with the reason, and the other images of its batch go on.

use burn::tensor::{Device, Tensor, TensorData};
use steex_classifier::DecisionModel;
use steex_explain::{AdamConfig, ExplainSettings, StyleGenerator, explain};
use steex_sean::NoiseMode;

/// Codes `[B, 2, 4]` read off the image's first pixels; the image is their sum everywhere.
struct SumGenerator;

impl StyleGenerator for SumGenerator {
    type Mask = ();
    type Error = String;

    fn encode(&self, images: Tensor<4>, _: &()) -> Result<Tensor<3>, String> {
        let b = images.dims()[0];
        Ok(images.slice([0..b, 0..2, 0..1, 0..4]).reshape([b, 2, 4]))
    }

    fn generate(&self, _: &(), codes: Tensor<3>, _: NoiseMode) -> Result<Tensor<4>, String> {
        let b = codes.dims()[0];
        let m = codes.sum_dim(2).sum_dim(1).reshape([b, 1, 1, 1]);
        Ok(m.expand([b, 3, 4, 4]))
    }

    fn select(&self, _: &(), _: &[usize]) {}
}

/// One logit: the log of the image's mean, NaN once the mean turns negative.
struct LogMean;

impl DecisionModel for LogMean {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let b = images.dims()[0];
        images.reshape([b, 48]).mean_dim(1).log()
    }

    fn num_outputs(&self) -> usize {
        1
    }
}

#[test]
fn a_non_finite_image_stops_and_fails_while_the_others_go_on() {
    let device = Device::flex().autodiff();
    // Image 0: every code 0.625 (sum 5); image 1: every code 0.02 (sum 0.16). Pushing the
    // logit down (target 0) lowers the sum: image 1 crosses zero within a few steps.
    let mut data = vec![0.625f32; 48];
    data.extend(vec![0.02f32; 48]);
    let images = Tensor::<4>::from_data(TensorData::new(data, [2, 3, 4, 4]), &device);
    let settings = ExplainSettings { attribute: 0, target: Some(0), steps: 20, lambda_prox: 0.0, ..Default::default() };
    let mut seen_inactive = false;
    let e = explain(&SumGenerator, &LogMean, images, &(), &settings, &mut |r| {
        seen_inactive |= !r.active[1];
    })
    .unwrap();
    let (ok, bad) = (&e.images[0], &e.images[1]);
    assert!(ok.failure.is_none(), "{:?}", ok.failure);
    assert_eq!(ok.steps_run, 20, "the healthy image ran every step");
    // The reconstruction's logit is log(5); the optimisation lowered it.
    let start = 5f32.ln();
    assert!(ok.final_logits[0].is_finite() && ok.final_logits[0] < start - 0.1, "not optimised: {:?}", ok.final_logits);
    let reason = bad.failure.as_deref().expect("image 1 is reported failed");
    assert!(reason.contains("non-finite"), "{reason}");
    assert!(bad.steps_run > 0 && bad.steps_run < 20, "stopped mid-way after {} steps", bad.steps_run);
    assert!(!bad.success);
    assert!(seen_inactive, "the observer saw image 1 stop");
    assert!(e.z_final.iter().all(|v| v.is_finite()), "the codes kept are finite");
}

/// An update that makes the codes themselves non-finite (an infinite learning rate, finite
/// loss and gradient) stops the image with that reason and puts its codes back to the
/// initial ones, the last finite codes it had.
#[test]
fn non_finite_codes_are_reset_to_the_initial_ones() {
    let device = Device::flex().autodiff();
    let images = Tensor::<4>::from_data(TensorData::new(vec![0.625f32; 48], [1, 3, 4, 4]), &device);
    let settings = ExplainSettings {
        attribute: 0,
        target: Some(0),
        steps: 5,
        lambda_prox: 0.0,
        adam: AdamConfig { lr: f64::INFINITY, ..Default::default() },
        ..Default::default()
    };
    let e = explain(&SumGenerator, &LogMean, images, &(), &settings, &mut |_| {}).unwrap();
    let r = &e.images[0];
    let reason = r.failure.as_deref().expect("the image is reported failed");
    assert!(reason.contains("non-finite style code"), "{reason}");
    assert_eq!(r.steps_run, 1, "stopped after the update that broke its codes");
    assert_eq!(e.z_final, e.z_initial, "the codes were reset to the initial ones");
    assert!(e.z_initial.iter().all(|&v| v == 0.625));
    assert!(r.final_logits[0].is_finite() && (r.final_logits[0] - 5f32.ln()).abs() < 1e-5, "{:?}", r.final_logits);
}
