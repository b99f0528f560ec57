//! The segmenter's training, as the published `train_deeplabv3.py`: torchvision's
//! `deeplabv3_resnet101` (or -50, or a reduced one), not pretrained, cross-entropy with
//! `ignore_index=0` (label 0 counted with [`SegmenterRecipe::count_background`]; 255 is
//! always ignored), Adam; mean IoU and pixel accuracy on validation. The ASPP's dropout
//! (p 0.5 in torchvision, active in train mode) is not applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};
use steex_deeplab::{DeepLabConfig, DeepLabV3};
use steex_nn::{BatchStats, TrainMode};

use crate::data::{HostBatch, Loader, LoaderConfig, Sample};
use crate::error::TrainError;
use crate::params::{HostTensors, TrainParams};
use crate::run::{Common, Event, Session, Task, Validation};

/// What to train and how (the published recipe: Adam lr 1e-4, batch 8, 50 epochs).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmenterRecipe {
    /// Backbone, head width and classes.
    pub config: DeepLabConfig,
    /// Count label 0 in the loss and the metrics (the published loss ignores it).
    pub count_background: bool,
    /// The ASPP's dropout probability in training (torchvision's 0.5; 0 turns it off).
    pub dropout: f64,
    /// Epochs, batch, learning-rate schedule, seed, flips, readers, size.
    pub common: Common,
}

/// `resnet50` / `resnet101` (torchvision's DeepLabV3 backbones), or a reduced one:
/// `resnet50:width=2,layers=1-1-1-1,head=16`; `classes` outputs.
pub fn parse_backbone(s: &str, classes: usize) -> Result<DeepLabConfig, String> {
    let (name, opts) = s.split_once(':').unwrap_or((s, ""));
    let depth = name.strip_prefix("resnet").and_then(|d| d.parse().ok()).filter(|d| [50, 101].contains(d));
    let mut c = depth
        .and_then(|d| DeepLabConfig::resnet(d, classes))
        .ok_or(format!("--backbone {s}: expected resnet50 or resnet101"))?;
    let num = |k: &str, v: &str| v.parse::<usize>().ok().filter(|&n| n > 0).ok_or(format!("--backbone {s}: {k}={v}"));
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let (k, v) = o.split_once('=').ok_or(format!("--backbone {s}: expected key=value, got `{o}`"))?;
        match k {
            "width" => c.backbone.width = num(k, v)?,
            "head" => c.head = num(k, v)?,
            "layers" => {
                let l: Vec<usize> = v.split('-').map(|b| num(k, b)).collect::<Result<_, _>>()?;
                c.backbone.layers = l.try_into().map_err(|_| format!("--backbone {s}: layers takes 4 counts"))?;
            }
            _ => return Err(format!("--backbone {s}: unknown option `{k}`")),
        }
    }
    Ok(c)
}

/// Trains the segmenter of `recipe` on the session's data (samples with masks).
pub fn train_segmenter(
    recipe: &SegmenterRecipe,
    session: &Session<'_>,
    device: &Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<TrainParams, TrainError> {
    crate::run::train(recipe, session, device, on_event)
}

/// Per-pixel cross-entropy of logits `[B, N, H, W]` against label ids `[B, H, W]` (as
/// floats), averaged over the pixels whose label is not ignored (`torch.nn.CrossEntropyLoss(
/// ignore_index=0)` when `ignore_background`; 255 always ignored).
pub fn cross_entropy(logits: Tensor<4>, labels: &[f32], ignore_background: bool) -> Tensor<1> {
    let [b, n, h, w] = logits.dims();
    let device = logits.device();
    let keep = |v: f32| v != 255.0 && !(ignore_background && v == 0.0) && (v as usize) < n;
    let idx: Vec<i64> = labels.iter().map(|&v| if keep(v) { v as i64 } else { 0 }).collect();
    let wts: Vec<f32> = labels.iter().map(|&v| keep(v) as u8 as f32).collect();
    let count = wts.iter().sum::<f32>().max(1.0);
    let idx = Tensor::<4, Int>::from_data(TensorData::new(idx, [b, 1, h, w]), &device);
    let wts = Tensor::<4>::from_data(TensorData::new(wts, [b, 1, h, w]), &device);
    let picked = log_softmax(logits, 1).gather(1, idx);
    (picked * wts).sum().neg().div_scalar(count)
}

impl SegmenterRecipe {
    fn model(&self, params_weights: &steex_nn::Weights, device: &Device) -> Result<DeepLabV3, TrainError> {
        DeepLabV3::load(params_weights, self.config.clone(), device).map_err(|e| TrainError::Model(e.to_string()))
    }

    fn images(&self, b: &HostBatch, device: &Device) -> Tensor<4> {
        let (h, w) = self.common.size;
        Tensor::from_data(TensorData::new(b.images.clone(), [b.len, 3, h, w]), device)
    }
}

impl Task for SegmenterRecipe {
    fn common(&self) -> Common {
        self.common
    }

    fn fingerprint(&self) -> BTreeMap<String, String> {
        [
            ("segmenter", format!("{:?}", self.config)),
            ("count_background", self.count_background.to_string()),
            ("dropout", self.dropout.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = self.config.to_metadata();
        m.insert("kind".into(), steex_deeplab::KIND.into());
        m.insert("converter".into(), format!("steex train {}", env!("CARGO_PKG_VERSION")));
        m
    }

    /// torchvision's initialisation: the backbone's convolutions Kaiming-normal (fan out),
    /// the head's `U(-k, k)`, `k = 1/sqrt(fan_in)` (PyTorch's default), batch norms weight 1,
    /// bias 0, running mean 0, variance 1.
    fn init(&self) -> HostTensors {
        let mut rng = StdRng::seed_from_u64(self.common.seed);
        self.config
            .expected_tensors()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
                let values = if name.ends_with(".running_var") {
                    vec![1.0; n]
                } else if name.ends_with(".running_mean") {
                    vec![0.0; n]
                } else if shape.len() == 4 && name.starts_with("backbone.") {
                    let std = (2.0 / (shape[0] * shape[2] * shape[3]) as f32).sqrt();
                    let normal = Normal::new(0.0f32, std).expect("a finite std");
                    (0..n).map(|_| normal.sample(&mut rng)).collect()
                } else if shape.len() == 4 || name == "classifier.4.bias" {
                    let fan = if shape.len() == 4 { fan_in } else { self.config.head };
                    let k = 1.0 / (fan as f32).sqrt();
                    let u = Uniform::new_inclusive(-k, k).expect("a finite range");
                    (0..n).map(|_| u.sample(&mut rng)).collect()
                } else if name.ends_with(".weight") {
                    vec![1.0; n]
                } else {
                    vec![0.0; n]
                };
                (name, (shape, values))
            })
            .collect()
    }

    fn check(&self, params: &TrainParams, device: &Device) -> Result<(), TrainError> {
        self.model(&params.weights_detached()?, device).map(|_| ())
    }

    fn loss(
        &self,
        params: &TrainParams,
        b: &HostBatch,
        device: &Device,
    ) -> Result<(Tensor<1>, Vec<BatchStats>), TrainError> {
        let model = self.model(&params.weights()?, device)?;
        // The dropout masks of step k are drawn from (seed, k): a resumed run draws the same.
        let seed = self.common.seed ^ (params.steps() + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mode = TrainMode::begin_with_dropout(self.dropout, seed);
        let logits = model.forward(self.images(b, device));
        let stats = mode.finish();
        Ok((cross_entropy(logits, &b.targets, !self.count_background), stats))
    }

    /// Mean IoU over the classes present in the labels or the predictions (class 0 left
    /// out unless counted), and pixel accuracy, over the pixels whose label is not ignored.
    fn validate(
        &self,
        params: &TrainParams,
        samples: Arc<Vec<Sample>>,
        device: &Device,
    ) -> Result<Validation, TrainError> {
        let model = self.model(&params.weights_detached()?, device)?;
        let n = self.config.classes;
        let cfg = LoaderConfig { flip: false, ..self.common.loader() };
        let (mut inter, mut union) = (vec![0u64; n], vec![0u64; n]);
        let (mut right, mut total, mut loss, mut images) = (0u64, 0u64, 0f64, 0usize);
        for b in Loader::start(samples, cfg, 0, 0) {
            if b.len == 0 {
                continue;
            }
            let logits = model.forward(self.images(&b, device)).detach();
            loss += steex_nn::host(cross_entropy(logits.clone(), &b.targets, !self.count_background))[0] as f64
                * b.len as f64;
            images += b.len;
            let pred: Vec<i64> =
                logits.argmax(1).into_data().convert::<i64>().try_into_vec::<i64>().unwrap_or_default();
            for (&p, &t) in pred.iter().zip(&b.targets) {
                let t = t as usize;
                if t == 255 || t >= n || (t == 0 && !self.count_background) {
                    continue;
                }
                let p = (p.max(0) as usize).min(n - 1);
                total += 1;
                if p == t {
                    right += 1;
                    inter[t] += 1;
                    union[t] += 1;
                } else {
                    union[t] += 1;
                    union[p] += 1;
                }
            }
        }
        let first = if self.count_background { 0 } else { 1 };
        let ious: Vec<f64> = (first..n).filter(|&c| union[c] > 0).map(|c| inter[c] as f64 / union[c] as f64).collect();
        let mean_iou = if ious.is_empty() { 0.0 } else { ious.iter().sum::<f64>() / ious.len() as f64 };
        Ok(Validation {
            loss: loss / images.max(1) as f64,
            metrics: vec![("mean_iou".into(), mean_iou), ("pixel_accuracy".into(), right as f64 / total.max(1) as f64)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backbones_parse_and_cross_entropy_ignores_label_0() {
        let c = parse_backbone("resnet50:width=2,layers=1-1-2-1,head=16", 5).unwrap();
        assert_eq!((c.backbone.width, c.backbone.layers, c.head, c.classes), (2, [1, 1, 2, 1], 16, 5));
        assert!(parse_backbone("resnet18", 5).is_err() && parse_backbone("resnet50:layers=1-1", 5).is_err());
        let device = Device::flex();
        // Two pixels, three classes: logits (0, 0, ln 3) at both, labels 0 and 2.
        let l = (3f32).ln();
        let logits = Tensor::<4>::from_data(TensorData::new(vec![0.0, 0.0, 0.0, 0.0, l, l], [1, 3, 1, 2]), &device);
        let p2 = 3.0 / 5.0f32; // softmax of (0, 0, ln 3) at class 2
        let ignored = steex_nn::host(cross_entropy(logits.clone(), &[0.0, 2.0], true))[0];
        assert!((ignored + p2.ln()).abs() < 1e-6, "{ignored}");
        let counted = steex_nn::host(cross_entropy(logits, &[0.0, 2.0], false))[0];
        let want = -((1.0 / 5.0f32).ln() + p2.ln()) / 2.0;
        assert!((counted - want).abs() < 1e-6, "{counted} vs {want}");
    }
}
