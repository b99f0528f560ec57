//! The published datasets' downloads to the folders the commands read (`steex prepare`):
//!
//! - [`celebamaskhq`]: CelebAMask-HQ's per-part masks to one label map per image, as the
//!   published `g_mask.py` composes them, with the images beside them, split train/test.
//! - [`celeba`]: CelebA's aligned images center-cropped and resized as the published
//!   `preprocess_celeba.py` does, split by the official partition.
//! - [`bdd`]: BDD100k's segmentation labels to the generator's label ids (255 -> 19), as
//!   STEEX's `pix2pix_dataset.py` does, and to the published segmenter's training ids (the
//!   shift of `BDDDataset_for_deeplab.py`), with the images beside them, in BDD100k's splits.
//! - [`bdd_oia`]: BDD-OIA's action files to the attribute CSV `steex train classifier`
//!   reads, keeping the images the published `bdd_dataset.py` keeps.
//! - [`split`]: the train/test rules (the official files, else a seeded fraction).
//! - [`runner`]: the output folder, the parallel loop over images with its progress bar,
//!   resumption (finished files are skipped) and the summary (`prepare.json`).
//! - [`error`]: [`DatasetError`], whose messages name the file or folder expected.

pub mod bdd;
pub mod bdd_oia;
pub mod celeba;
pub mod celebamaskhq;
pub mod error;
pub mod runner;
pub mod split;

pub use error::DatasetError;
pub use runner::{Outcome, PrepareSummary};
pub use split::{Split, SplitRule};
