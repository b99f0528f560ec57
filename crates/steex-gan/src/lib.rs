//! The pieces of the SEAN generator's GAN training as STEEX's published code has them
//! (valeoai/STEEX `models/networks/discriminator.py`, `normalization.py`, `loss.py`,
//! `architecture.py` `VGG19`, `pix2pix_model.py`), natively in burn on any backend (the code
//! takes a `&Device`):
//!
//! - [`spectral`]: `torch.nn.utils.spectral_norm` on a convolution in `train()`
//!   (`weight_orig`, buffers `weight_u`, `weight_v`, one power iteration per forward);
//! - [`discriminator`]: `MultiscaleDiscriminator` of `NLayerDiscriminator`s with
//!   `norm_D spectralinstance`, intermediate features returned, named as the published
//!   state dict (`discriminator_0.model1.0.0.weight_orig`, ...);
//! - [`loss`]: the hinge GAN loss (generator and discriminator), feature matching;
//! - [`vgg`]: torchvision's VGG19 `features` (same `features.<i>` names) and `VGGLoss`;
//! - [`generator_step`]: one whole iteration, SEAN's generator (with its encoder) in train
//!   mode (batch statistics, spectral norm on its residual blocks' convolutions), its Adam
//!   step on `GAN + GAN_Feat + VGG`, then the discriminator's step;
//! - [`train`]: one discriminator step (Adam, TTUR) over [`steex_nn::TrainParams`], and the
//!   generator's loss terms for a given fake image.
//!
//! # What matches PyTorch, and how it is tested
//! `tools/make_gan_fixtures.py` writes the published modules (copied in Python, with the real
//! `spectral_norm` and torchvision's VGG19 `make_layers`) on reduced sizes into
//! `tests/fixtures/gan/`, references computed in float64; `tests/parity.rs` checks against
//! them, within 1e-4 of the reference's largest magnitude (max abs error / max abs value):
//! spectral norm's `u`, `v`, weight, output and `weight_orig` gradient after one forward; every
//! output of both discriminators and the `u`, `v` after a forward; the five VGG maps; the
//! generator's GAN, feature-matching, VGG and total losses and their gradient in the fake
//! image; the discriminator's hinge terms; and two discriminator steps (losses, gradients,
//! Adam's moments, the buffers, the parameters, and Adam's change of each parameter against
//! PyTorch's change taken in float64; elements whose Adam denominator is below 1e-5, where
//! the step is ill-conditioned in the gradient, are left out of that last check, 8 of the
//! 23 434 in the first step and none in the second, and covered by the gradient and moment
//! checks). Unit tests beside each module run random weights (shapes, finiteness, the
//! pooling's `count_include_pad=False`, names).
//!
//! `tools/make_gan_step_fixtures.py` writes one whole iteration of a reduced SEAN (generator
//! with its encoder in train mode, steex's seeded noise replayed, then the discriminator) into
//! `tests/fixtures/gan_step/`; `tests/step_parity.rs` checks the loss terms within 1e-5
//! relative, both fakes, Adam's change and the parameter after it, spectral norm's `u`, `v`
//! and the running statistics within 1e-4, every gradient within 5e-4 (float32 sums over
//! 8192 pixels; gradients zero in theory, a bias before a norm, are checked to be round-off;
//! Adam's change is left out where it is ill-conditioned in the gradient).

pub mod discriminator;
pub mod error;
pub mod generator_step;
pub mod loss;
pub mod spectral;
pub mod train;
pub mod vgg;

pub use discriminator::{MultiscaleDiscriminator, MultiscaleDiscriminatorConfig, NLayerDiscriminator};
pub use error::GanError;
pub use generator_step::{GanTrainer, StepLosses, init_generator_values, training_shapes};
pub use spectral::SpectralNormConv2d;
pub use train::{DiscriminatorTrainer, GanLossConfig, GanOptimConfig, generator_losses};
pub use vgg::{Vgg19, Vgg19Config, vgg_loss};
