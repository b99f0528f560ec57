//! Training the models of STEEX in burn, as the published recipes do: the decision model
//! (`train_decision_model_*.py`: BCE on chosen attributes, Adam, StepLR) on a folder of
//! images and a label file, and the segmenter (`train_deeplabv3.py`: DeepLabV3,
//! cross-entropy with label 0 ignored) on folders of images and masks; batch norm in train
//! mode, any backend (the code takes a `&Device`).
//!
//! - [`labels`]: label files (CelebA attribute text, BDD-OIA action JSON, CSV) and the
//!   attributes chosen by name;
//! - [`data`]: the samples of a folder, checked before training, and the [`data::Loader`] that
//!   reads, decodes and resizes in worker threads ahead of the step;
//! - [`arch`]: the architectures (`densenet121`, `resnet18`..`resnet152`, reduced ones), their
//!   initialisation (torchvision's) and their file metadata;
//! - [`params`]: named trainable tensors in the published layout with PyTorch's Adam;
//! - [`checkpoint`]: checkpoint folders written atomically, from which training resumes;
//! - [`run`]: the training loop every model shares ([`run::Task`]);
//! - [`classifier`]: the decision model's task (BCE, accuracy per attribute);
//! - [`generator`]: SEAN's GAN training (generator, encoder, discriminator; TTUR);
//! - [`segmenter`]: the segmenter's task (DeepLabV3, cross-entropy, mean IoU).

pub mod arch;
pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod error;
pub mod generator;
pub mod labels;
pub mod params;
pub mod run;
pub mod segmenter;

pub use arch::Arch;
pub use classifier::{ClassifierRecipe, train_classifier};
pub use error::TrainError;
pub use labels::LabelTable;
pub use params::TrainParams;
pub use run::{Event, Session, Task, Validation};
pub use segmenter::{SegmenterRecipe, train_segmenter};
