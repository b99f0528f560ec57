//! Pieces shared by the steex model crates: [`Weights`], a checked name-to-tensor map built
//! from a converted safetensors file, and the eval-mode layers built from it.
//!
//! Model crates construct their modules *from* weights (no random initialisation first), so
//! building a 267 M-parameter generator costs one copy of its weights. Every tensor is
//! looked up by the name the PyTorch checkpoint gives it and checked against the shape the
//! module expects; [`Weights::finish`] then refuses tensors nobody used. Loaders take a
//! [`Scope`] (`w.pp("ace_0")`, as candle's `VarBuilder::pp`) and layer specs such as
//! [`ConvSpec`] (`#[derive(Config)]`). [`TrainParams`] holds such tensors for training (PyTorch's
//! Adam; batch-norm statistics and spectral-norm vectors as buffers).

pub mod affine_relu;
pub mod bn_train;
pub mod conv2d;
pub mod conv3x3;
pub mod layers;
pub mod load;
pub mod params;
pub mod pool;
pub mod skinny;
pub mod train_mode;
pub mod upsample;
pub mod weights;

pub use conv3x3::Conv3x3;
pub use layers::{BatchNorm2d, batch_norm_shapes};
pub use load::{ConvSpec, load_linear};
pub use params::{HostTensors, TrainParams};
pub use steex_io::host;
pub use train_mode::{BatchStats, TrainMode, dropout};
pub use weights::{Scope, Weights, WeightsError};
