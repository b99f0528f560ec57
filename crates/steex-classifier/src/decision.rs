//! The one thing the explainer asks of a classifier.

use burn::tensor::Tensor;

use crate::error::ClassifierError;

/// A differentiable image classifier with `K` independent (multi-label) outputs: logits
/// whose sigmoids are the probabilities. Implement it for your own burn module to explain
/// it; the bundled [`crate::DenseNet`] and [`crate::ResNet`] implement it.
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
