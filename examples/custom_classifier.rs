//! Explaining your own classifier: any burn module that implements `DecisionModel` can be
//! explained. Here a small CNN (random weights, for illustration) and a small SEAN generator
//! (random weights); with real weights the code is the same. First with one sigmoid output
//! (as the published models), then with a 4-class softmax head explained toward a chosen
//! class.
//!
//!     cargo run --release --example custom_classifier

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Int, Tensor};
use steex::classifier::{DecisionModel, OutputKind};
use steex::explain::{AdamConfig, ExplainSettings, Objective, explain};
use steex::sean::{NoiseMode, SeanConfig, SeanGenerator};

/// Random pooled features barely differ between images; a large gain on the head makes
/// this random classifier's decision react to them.
const GAIN: f32 = 5000.0;

/// A user's own classifier: two convolutions, global pooling, `outputs` logits: sigmoids
/// (multi-label) or one softmax.
#[derive(Module, Debug)]
struct SmallCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    head: Linear,
    #[module(skip)]
    softmax: bool,
}

impl SmallCnn {
    fn new(outputs: usize, softmax: bool, device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3]).with_stride([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        };
        SmallCnn {
            conv1: conv(3, 16).init(device),
            conv2: conv(16, 32).init(device),
            head: LinearConfig::new(32, outputs).init(device),
            softmax,
        }
    }
}

impl DecisionModel for SmallCnn {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = relu(self.conv2.forward(relu(self.conv1.forward(images))));
        let [b, c, h, w] = x.dims();
        self.head.forward(x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])).mul_scalar(GAIN)
    }
    fn num_outputs(&self) -> usize {
        self.head.weight.dims()[1]
    }
    fn output_kind(&self) -> OutputKind {
        if self.softmax { OutputKind::Softmax } else { OutputKind::Sigmoid }
    }
}

fn main() {
    // Gradients flow to the style codes only: the models carry no trainable parameters.
    let device = Device::flex().autodiff();
    // Random weights and codes from a fixed seed: the same run every time.
    device.seed(0);
    let config = SeanConfig {
        labels: 4,
        ngf: 4,
        style_length: 32,
        width: 64,
        aspect_ratio: 1.0,
        spade_hidden: 128,
        encoder_ngf: 32,
    };
    let generator = SeanGenerator::random(config, 1, &device).expect("valid config").no_grad();
    let mut classifier = SmallCnn::new(1, false, &device);

    // A 64x64 scene: four horizontal bands, one per label; the query is the generator's
    // image of random style codes.
    let labels = Tensor::<1, Int>::arange(0..64, &device).div_scalar(16).reshape([1, 64, 1]).expand([1, 64, 64]);
    let mask = generator.mask(labels).expect("labels in range");
    let codes = Tensor::<3>::random([1, 4, 32], Distribution::Normal(0.0, 0.5), &device);
    let image = generator.generate(&mask, codes, NoiseMode::Seeded(0)).expect("shapes fit").detach();
    // For the illustration only: shift the random classifier so the query sits just on the
    // "no" side of its decision (logit -1).
    let logit: f32 = classifier.logits(image.clone()).into_scalar();
    let bias = classifier.head.bias.take().expect("bias").val();
    let shifted = bias.sub_scalar((logit + 1.0) / GAIN).into_data();
    classifier.head.bias = Some(Param::from_tensor(Tensor::from_data(shifted, &device)));
    let classifier = classifier.no_grad();

    let settings = ExplainSettings {
        attribute: 0,
        steps: 60,
        adam: AdamConfig { lr: 0.05, ..Default::default() },
        noise: NoiseMode::Seeded(0),
        regions: Some(vec![1, 2]),
        ..Default::default()
    };
    let e = explain(&generator, &classifier, image.clone(), &mask, &settings, &mut |r| {
        if r.step % 10 == 0 {
            eprintln!("step {:3}: decision loss {:.4}, p = {:.3}", r.step, r.loss_decision[0], r.score[0]);
        }
    })
    .expect("explanation");
    let r = &e.images[0];
    println!(
        "custom CNN: p = {:.3} on the query -> {:.3} on the counterfactual (target {}), {}; only regions 1 and 2 moved",
        r.initial_scores[0],
        r.final_scores[0],
        r.target,
        if r.success { "flipped" } else { "not flipped" }
    );

    // The same network with a 4-class softmax head, explained toward class 2. For the
    // illustration only: its biases are shifted so that on the query class 2 is one logit
    // behind the three others (which tie at 0).
    let class = 2;
    let mut softmax = SmallCnn::new(4, true, &device);
    let mut want = [0f32; 4];
    want[class] = -1.0;
    let logits = steex::nn::host(softmax.logits(image.clone()));
    let bias = steex::nn::host(softmax.head.bias.take().expect("bias").val());
    let shifted: Vec<f32> = (0..4).map(|i| bias[i] - (logits[i] - want[i]) / GAIN).collect();
    softmax.head.bias = Some(Param::from_tensor(Tensor::from_data(shifted.as_slice(), &device)));
    let softmax = softmax.no_grad();
    let settings = ExplainSettings {
        steps: 100,
        noise: NoiseMode::Seeded(0),
        early_stop: Some(3),
        objective: Objective::Class { class },
        ..Default::default()
    };
    let e = explain(&generator, &softmax, image, &mask, &settings, &mut |_| {}).expect("explanation");
    let r = &e.images[0];
    let fmt = |p: &[f32]| p.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" ");
    println!(
        "softmax CNN toward class {class}: p = [{}] on the query -> [{}] on the counterfactual, {} in {} steps",
        fmt(&r.initial_probabilities),
        fmt(&r.final_probabilities),
        if r.success { "reached" } else { "not reached" },
        r.steps_run
    );
}
