//! `explain_steered`: the observer sees the codes after each step's update, and a `Break`
//! ends the optimisation there, the explanation made of the codes reached.

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor, TensorData};
use steex_classifier::DecisionModel;
use steex_explain::{ExplainSettings, StyleGenerator, explain, explain_steered};
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

/// One logit: the image's mean.
struct Mean;

impl DecisionModel for Mean {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let b = images.dims()[0];
        images.reshape([b, 48]).mean_dim(1)
    }

    fn num_outputs(&self) -> usize {
        1
    }
}

fn image(device: &Device) -> Tensor<4> {
    Tensor::<4>::from_data(TensorData::new(vec![0.5f32; 48], [1, 3, 4, 4]), device)
}

#[test]
fn the_observer_sees_the_codes_and_a_break_stops_there() {
    let device = Device::flex().autodiff();
    let settings = ExplainSettings { attribute: 0, target: Some(0), steps: 30, lambda_prox: 0.0, ..Default::default() };
    let mut codes: Vec<Vec<f32>> = Vec::new();
    let e = explain_steered(&SumGenerator, &Mean, image(&device), &(), &settings, &mut |r, z| {
        codes.push(z.to_vec());
        if r.step == 4 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .unwrap();
    assert_eq!(codes.len(), 4, "the loop ended at the step that said stop");
    assert_eq!(e.images[0].steps_run, 4);
    assert_eq!(codes[3], e.z_final, "the explanation is made of the codes reached");
    assert_ne!(codes[0], e.z_initial, "the codes seen are after the step's update");
    // Pushing the decision down (target 0) lowers the codes, step after step.
    let sum = |v: &[f32]| v.iter().sum::<f32>();
    assert!(sum(&codes[3]) < sum(&codes[0]) && sum(&codes[0]) < sum(&e.z_initial));

    // Never stopping, it is `explain`, bit for bit.
    let all =
        explain_steered(&SumGenerator, &Mean, image(&device), &(), &settings, &mut |_, _| ControlFlow::Continue(()))
            .unwrap();
    let plain = explain(&SumGenerator, &Mean, image(&device), &(), &settings, &mut |_| {}).unwrap();
    assert_eq!(all.images, plain.images);
    assert_eq!(all.z_final, plain.z_final);
    assert_eq!(all.images[0].steps_run, 30);
}
