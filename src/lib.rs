//! STEEX in Rust: semantic counterfactual explanations of image classifiers, natively in
//! burn.
//!
//! This facade re-exports the workspace's crates so that one dependency gives everything:
//!
//! - [`sean`]: the SEAN generator and its style encoder.
//! - [`classifier`]: decision models (DenseNet, ResNet) and the `DecisionModel` trait.
//! - [`deeplab`]: the DeepLabV3 segmenter that makes masks from images.
//! - [`explain`]: the STEEX explainer, presets, region and attribute names.
//! - [`metrics`]: success, proximity, FID, FVA, MNAC and the models behind them
//!   ([`inception`]: pytorch-fid's Inception-v3; [`metrics::models`]: the face embedder and
//!   the attribute oracle).
//! - [`nn`]: named-weight loading and layers shared by the model crates.
//! - the checkpoint converter (`weights-convert`, re-exported below): import the published
//!   PyTorch checkpoints into safetensors, safely.
//!
//! and adds what the commands run on:
//!
//! - [`io`]: images, masks, `.npy` arrays (from `steex-io`) and weights files to models.
//! - [`run`]: options to settings, models and names, the result folder of one explanation.
//! - [`record`]: the goal and per-region change in `result.json`.
//! - [`results`]: the result schema (`result.json`, `results.jsonl`, `summary.json`, `plan.json`).
//! - [`dataset`]: folders of images: stable walk, sharding, appending `results.jsonl`.
//! - [`prepare`]: the published datasets' downloads to the folders the commands read
//!   (`steex prepare`).
//! - [`demo`]: the synthetic-world demo; [`render`]: report pictures.
//! - [`serve`]: `steex serve`, the explorer page and its JSON API.
//! - [`device`]: `--device cpu|wgpu|cuda` to a started device, shared by the binary, the
//!   examples, the benchmarks and the tests.
//!
//! # Example
//!
//! One explanation with converted weights (the README's "As a library", compiled here):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use burn::tensor::Device;
//! use steex::explain::{ExplainSettings, explain};
//! use steex::io::{LabelMap, load_classifier, load_generator, read_image};
//!
//! let device = Device::flex().autodiff(); // gradients reach the style codes only
//! let g = load_generator("G.safetensors".as_ref(), &device)?;
//! let c = load_classifier("C.safetensors".as_ref(), &device)?;
//! let (h, w) = g.config().image_size();
//! let mask = g.mask(LabelMap::read("mask.png".as_ref())?.resized_pil(h, w).to_tensor(&device))?;
//! let image = read_image("face.png".as_ref(), (h, w))?.to_tensor::<4>(&device);
//! let settings = ExplainSettings { attribute: 1, regions: Some(vec![10]), ..Default::default() };
//! let e = explain(&g, &c, image, &mask, &settings, &mut |step| eprintln!("{:?}", step.score))?;
//! println!("flipped: {}", e.images[0].success);
//! # Ok(())
//! # }
//! ```

pub mod alloc;
#[doc(hidden)]
pub mod bench_support;
pub mod dataset;
pub mod demo;
pub mod device;
pub mod error;
pub mod io;
pub mod outdir;
pub mod prepare;
pub mod record;
pub mod render;
pub mod results;
pub mod run;
pub mod serve;

pub use error::{Error, Result};
pub use steex_classifier as classifier;
pub use steex_deeplab as deeplab;
pub use steex_explain as explain;
pub use steex_metrics as metrics;
pub use steex_metrics::models::inception;
pub use steex_nn as nn;
pub use steex_sean as sean;
pub use steex_synth as synth;
pub use steex_train as train;
pub use weights_convert;
