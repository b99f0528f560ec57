//! A synthetic world whose decision rule is known, and the training of tiny steex models on
//! it: a street scene with a traffic light, where the decision `stop` depends on the lamp's
//! colour alone ([`scene`]). The tiny SEAN generator, ResNet decision model and DeepLabV3
//! segmenter ([`world`]) are trained here in burn ([`train`]) and bundled with the `steex`
//! package, so the demo runs with no download, and explanations can be scored against the
//! true cause.

pub mod batch;
pub mod params;
pub mod scene;
pub mod train;
pub mod world;

pub use batch::{Batch, batch, batch_of};
pub use params::TrainParams;
pub use scene::{Scene, SceneSpec, scene};
pub use train::{Progress, TrainConfig, TrainError};
