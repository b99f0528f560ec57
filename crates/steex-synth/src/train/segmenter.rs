//! The segmenter's training (pixel cross-entropy on the label maps).

use burn::tensor::Device;
use burn::tensor::activation::log_softmax;
use steex_deeplab::DeepLabV3;

use super::*;
use crate::params::TrainParams;
use crate::scene::REGIONS;
use crate::world;

/// Trains the segmenter on the label maps (pixel cross-entropy).
pub fn train_segmenter(
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<TrainParams, TrainError> {
    let k = REGIONS.len();
    train_loop(
        world::segmenter_spec(),
        cfg,
        device,
        &mut |p, step| {
            let s = DeepLabV3::load(&p.weights()?, world::segmenter_config(), device)
                .map_err(|e| TrainError::Model(e.to_string()))?;
            let b = batch(&seeds(cfg, step), device);
            let logp = log_softmax(s.forward(b.images), 1);
            let [n, _, h, wd] = logp.dims();
            let onehot = b.labels.one_hot::<4>(k).permute([0, 3, 1, 2]).float();
            Ok((logp * onehot).sum().neg().div_scalar((n * h * wd) as f64))
        },
        progress,
    )
}
