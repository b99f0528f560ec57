//! Files for the steex crates, in one place: everything that reads a file a user gives or
//! writes a result.
//!
//! - [`atomic`]: files written to a temporary sibling and renamed into place, the registry
//!   of temporaries an interruption removes, stale-temporary cleanup.
//! - [`outdir`]: result folders written the same way ([`OutDir`]).
//! - [`lock`]: one writer per output at a time ([`OutputLock`]).
//! - [`rename`]: renames that never replace by accident (`renameat2` on Linux).
//! - [`interrupt`]: the SIGINT/SIGTERM/SIGHUP handler that removes the temporaries.
//! - [`npy`]: float32 `.npy` arrays ([`Array`]), checked before anything is allocated.
//! - [`image`]: query images, label maps ([`LabelMap`]), PNG encoding, colours.
//! - [`resize`]: Pillow's bicubic (images) and nearest (label maps) resizes, bit for bit.
//! - [`json`]: JSON files read and written through typed values.
//! - [`safetensors`]: the deterministic safetensors header every writer shares.
//! - [`error`]: [`IoError`], whose messages name the file, and [`clean`] for one-line text.

pub mod atomic;
pub mod error;
pub mod image;
pub mod interrupt;
pub mod json;
pub mod lock;
pub mod npy;
pub mod outdir;
pub mod rename;
pub mod resize;
pub mod safetensors;

pub use atomic::{atomic_write, write_bytes};
pub use error::{IoError, Result, clean, one_line};
pub use image::{LabelMap, hsv_to_rgb, image_size, read_image, read_image_native};
pub use lock::OutputLock;
pub use npy::{Array, host, read_npy, write_npy};
pub use outdir::OutDir;
