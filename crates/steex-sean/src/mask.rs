//! Semantic masks: label maps, PyTorch's legacy nearest resize, one-hot maps per scale.

use std::sync::Arc;

use burn::tensor::{Int, Tensor};

use crate::ace::AceCache;
use crate::neighbourhood::Neighbourhoods;

use crate::config::SeanConfig;
use crate::error::SeanError;

/// Label value meaning "unknown"; mapped to label `L - 1`, as the published data loader does.
pub const UNKNOWN_LABEL: i64 = 255;

/// Source indices of PyTorch's legacy `F.interpolate(mode="nearest")` along one axis
/// (`steex-io`'s, shared with the label maps read from files).
pub use steex_io::image::nearest_indices;

/// Nearest resize of a label map `[B, H, W]` to `[B, h, w]` (legacy rule).
pub fn resize_labels(labels: Tensor<3, Int>, [h, w]: [usize; 2]) -> Tensor<3, Int> {
    let [_, ih, iw] = labels.dims();
    let device = labels.device();
    let rows = Tensor::<1, Int>::from_ints(nearest_indices(ih, h).as_slice(), &device);
    let cols = Tensor::<1, Int>::from_ints(nearest_indices(iw, w).as_slice(), &device);
    labels.select(1, rows).select(2, cols)
}

/// One-hot encoding `[B, H, W] -> [B, L, H, W]` (float, 1 where the label is the channel).
pub fn one_hot(labels: Tensor<3, Int>, l: usize) -> Tensor<4> {
    let [b, h, w] = labels.dims();
    let device = labels.device();
    let ids = Tensor::<1, Int>::arange(0..l as i64, &device).reshape([1, l, 1, 1]).expand([b, l, h, w]);
    labels.unsqueeze_dim::<4>(1).expand([b, l, h, w]).equal(ids).float()
}

/// A batch of label maps at the model's size, with the one-hot maps every layer uses
/// computed once.
#[derive(Debug, Clone)]
pub struct SemanticMask {
    labels: Tensor<3, Int>,
    /// One-hot at the trunk's sizes: `sh * 2^k x sw * 2^k` for `k = 0..=5`.
    trunk: Vec<Tensor<4>>,
    /// 3x3 label neighbourhoods at the trunk's sizes `k = 0..=4` (the blocks with a style
    /// branch), for the fast path.
    neighbourhoods: Vec<Neighbourhoods>,
    /// The fast path's mask-only tensors, per block and ACE layer, with the id of the
    /// generator that computed them.
    pub(crate) cache: Option<(u64, Arc<Vec<Vec<AceCache>>>)>,
}

impl SemanticMask {
    /// Checks `labels` (`[B, H, W]`, values in `0..L` or 255) against the model and builds
    /// the one-hot maps. 255 becomes `L - 1`.
    pub fn new(labels: Tensor<3, Int>, config: &SeanConfig) -> Result<Self, SeanError> {
        let [b, h, w] = labels.dims();
        let (mh, mw) = config.image_size();
        if (h, w) != (mh, mw) {
            return Err(SeanError::Mask(format!("label map is {w}x{h}, the model takes {mw}x{mh} (W x H)")));
        }
        if b == 0 {
            return Err(SeanError::Mask("empty batch".into()));
        }
        let l = config.labels;
        let labels = labels.clone().mask_fill(labels.equal_elem(UNKNOWN_LABEL), (l - 1) as i64);
        let values = labels.clone().into_data().convert::<i64>();
        let values = values.as_slice::<i64>().map_err(|e| SeanError::Mask(format!("{e:?}")))?;
        if let Some(bad) = values.iter().find(|&&v| v < 0 || v >= l as i64) {
            return Err(SeanError::Mask(format!(
                "label id {bad} is out of range: this model has {l} labels (0..={}, or 255 for unknown)",
                l - 1
            )));
        }
        let (sh, sw) = config.start_size();
        let device = labels.device();
        let mut trunk = Vec::with_capacity(6);
        let mut neighbourhoods = Vec::with_capacity(5);
        for k in 0..=5 {
            let size = [sh << k, sw << k];
            let resized = resize_labels(labels.clone(), size);
            if k <= 4 {
                let host = resized.clone().into_data().convert::<i64>();
                let host = host.as_slice::<i64>().map_err(|e| SeanError::Mask(format!("{e:?}")))?;
                neighbourhoods.push(Neighbourhoods::new(host, b, size, l, &device));
            }
            trunk.push(one_hot(resized, l));
        }
        Ok(SemanticMask { labels, trunk, neighbourhoods, cache: None })
    }

    /// The label map (`[B, H, W]`, unknown mapped to `L - 1`).
    pub fn labels(&self) -> Tensor<3, Int> {
        self.labels.clone()
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.labels.dims()[0]
    }

    /// One-hot map at trunk scale `k` (`sh * 2^k x sw * 2^k`).
    pub fn at_scale(&self, k: usize) -> Tensor<4> {
        self.trunk[k].clone()
    }

    /// The 3x3 label neighbourhoods at trunk scale `k` (`0..=4`).
    pub fn neighbourhoods(&self, k: usize) -> &Neighbourhoods {
        &self.neighbourhoods[k]
    }

    /// The masks of images `rows` of the batch (in that order), with everything computed
    /// from them (one-hot maps, the fast path's cache) taken along, not recomputed.
    pub fn select(&self, rows: &[usize]) -> SemanticMask {
        let device = self.labels.device();
        let idx = Tensor::<1, Int>::from_ints(rows.iter().map(|&r| r as i64).collect::<Vec<_>>().as_slice(), &device);
        let pick = |t: &Tensor<4>| t.clone().select(0, idx.clone());
        let cache = self.cache.as_ref().map(|(id, layers)| {
            let layers = layers
                .iter()
                .map(|block| block.iter().map(|c| AceCache { gamma: pick(&c.gamma), beta: pick(&c.beta) }).collect())
                .collect();
            (*id, Arc::new(layers))
        });
        SemanticMask {
            labels: self.labels.clone().select(0, idx.clone()),
            trunk: self.trunk.iter().map(pick).collect(),
            neighbourhoods: self.neighbourhoods.iter().map(|n| n.select(rows)).collect(),
            cache,
        }
    }

    /// One-hot map at an arbitrary size (legacy nearest resize of the label map).
    pub fn at_size(&self, size: [usize; 2], l: usize) -> Tensor<4> {
        one_hot(resize_labels(self.labels.clone(), size), l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_indices_follow_pytorch_legacy_rule() {
        // torch: F.interpolate(torch.arange(5.).view(1,1,1,5), size=(1,3)) -> [0, 1, 3]
        assert_eq!(nearest_indices(5, 3), vec![0, 1, 3]);
        // torch: size 7 -> 3: [0, 2, 4]
        assert_eq!(nearest_indices(7, 3), vec![0, 2, 4]);
        assert_eq!(nearest_indices(2, 4), vec![0, 0, 1, 1]);
        assert_eq!(nearest_indices(64, 2), vec![0, 32]);
    }
}
