//! The one thing the explainer asks of a classifier.

use burn::tensor::Tensor;

use crate::error::ClassifierError;

/// How a decision model's logits become probabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// `K` independent (multi-label) outputs: each probability is its logit's sigmoid (the
    /// published decision models).
    #[default]
    Sigmoid,
    /// One multi-class decision: the probabilities are the softmax of the `K` logits.
    Softmax,
}

impl OutputKind {
    /// The name written in a converted file's `output` metadata (`sigmoid`, `softmax`).
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Sigmoid => "sigmoid",
            OutputKind::Softmax => "softmax",
        }
    }

    /// The probabilities of one image's logits.
    pub fn probabilities(self, logits: &[f32]) -> Vec<f32> {
        match self {
            OutputKind::Sigmoid => logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
            OutputKind::Softmax => {
                let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = logits.iter().map(|&x| (x - m).exp()).collect();
                let s: f32 = e.iter().sum();
                e.iter().map(|&x| x / s).collect()
            }
        }
    }
}

impl std::str::FromStr for OutputKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sigmoid" => Ok(OutputKind::Sigmoid),
            "softmax" => Ok(OutputKind::Softmax),
            _ => Err(format!("output kind `{s}`: expected sigmoid or softmax")),
        }
    }
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A differentiable image classifier with `K` outputs: logits whose sigmoids
/// ([`OutputKind::Sigmoid`], multi-label, as published) or whose softmax
/// ([`OutputKind::Softmax`], one multi-class decision) are the probabilities. Implement it
/// for your own burn module to explain it; the bundled [`crate::DenseNet`] and
/// [`crate::ResNet`] implement it.
///
/// Inputs are images `[B, 3, H, W]` in [-1, 1], as the generator produces them. The model
/// must be built on the device the explainer runs on (an autodiff device for gradients)
/// and should hold no trainable parameters (`Module::no_grad`), so that explaining never
/// computes a weight gradient.
pub trait DecisionModel {
    /// Decision logits of images in [-1, 1].
    ///
    /// # Shapes
    /// - input: `[B, 3, H, W]`
    /// - output: `[B, K]`
    fn logits(&self, images: Tensor<4>) -> Tensor<2>;

    /// Number of outputs `K`.
    fn num_outputs(&self) -> usize;

    /// How the logits become probabilities (default: independent sigmoids, as published).
    fn output_kind(&self) -> OutputKind {
        OutputKind::Sigmoid
    }

    /// Checks an input size `(height, width)` can go through the model; `Err` (a
    /// [`ClassifierError::Input`]) says why not.
    fn check_input_size(&self, height: usize, width: usize) -> Result<(), ClassifierError> {
        let _ = (height, width);
        Ok(())
    }
}

/// Output names of the published decision models, by output count.
pub fn default_output_names(k: usize) -> Vec<String> {
    match k {
        3 => ["male", "smile", "young"].map(String::from).to_vec(),
        4 => ["move_forward", "stop", "turn_left", "turn_right"].map(String::from).to_vec(),
        _ => (0..k).map(|i| format!("output_{i}")).collect(),
    }
}
