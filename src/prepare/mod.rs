//! The published datasets' downloads to the folders the commands read (`steex prepare`):
//!
//! - [`celebamaskhq`]: CelebAMask-HQ's per-part masks to one label map per image, as the
//!   published `g_mask.py` composes them, with the images beside them, split train/test.
//! - [`celeba`]: CelebA's aligned images center-cropped and resized as the published
//!   `preprocess_celeba.py` does, split by the official partition.
//! - [`split`]: the train/test rules (the official files, else a seeded fraction).
//! - [`runner`]: the output folder, the parallel loop over images with its progress bar,
//!   resumption (finished files are skipped) and the summary (`prepare.json`).
//! - [`error`]: [`DatasetError`], whose messages name the file or folder expected.

pub mod celeba;
pub mod celebamaskhq;
pub mod error;
pub mod runner;
pub mod split;

pub use error::DatasetError;
pub use runner::{Outcome, PrepareSummary};
pub use split::{Split, SplitRule};
