//! Named trainable tensors in the published checkpoint layout, with PyTorch's Adam: now in
//! [`steex_nn::params`] (shared with the GAN trainer), re-exported here.

pub use steex_nn::params::*;
