//! `weights-convert`: import PyTorch checkpoints (the published STEEX ones among them) into
//! safetensors files the `steex` crates load by name.
//!
//! - [`Checkpoint::open`] reads both containers `torch.save` writes (the zip archive and the
//!   legacy pickle stream) through `pytorch-reader`, after checking every pickle opcode and
//!   global against an allow-list ([`pickle_guard`]): nothing in a checkpoint is executed
//!   or imported, and a checkpoint that names any other global (`posix.system`,
//!   `builtins.eval`, a class) is refused with its name.
//! - [`convert_state_dict`] resolves spectral norm with PyTorch's eval-mode rule
//!   ([`spectral`]), drops tensors the model never uses, checks names and shapes against a
//!   [`ModelSpec`], and [`Converted::write`] writes a deterministic safetensors file
//!   atomically, with the model configuration in its metadata.
//!
//! Tensors keep their checkpoint names and PyTorch's layout (a Linear weight is
//! `[out, in]`), so Python's `safetensors` loads the output straight into the PyTorch model.

pub mod checkpoint;
pub mod convert;
pub mod error;
pub mod inspect;
pub mod metrics_models;
pub mod models;
pub mod output;
pub mod pickle_guard;
pub mod spectral;
pub mod to_pytorch;
pub mod to_pytorch_sean;

pub use checkpoint::{Checkpoint, Container, TensorData};
pub use convert::{Converted, ModelSpec, convert_state_dict};
pub use error::{ConvertError, Result};
pub use output::{atomic_write, write_safetensors};
