//! The decision ResNet, as the published `DecisionResnetModel` wraps torchvision's ResNet
//! (`resnet.*`, `fc` replaced by Linear(in, K)); the backbone is `steex-resnet`'s.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use steex_nn::{Weights, load_linear};
pub use steex_resnet::{Block, BlockKind, BlockSize, ResNetBackbone, ResNetConfig};

use crate::decision::DecisionModel;
use crate::error::ClassifierError;

/// Metadata value of `kind` for a converted ResNet decision model.
pub const KIND: &str = "resnet";

/// The decision model: backbone, global average pool, `fc`.
#[derive(Module, Debug)]
pub struct ResNet {
    pub resnet: ResNetBackbone,
    pub fc: Linear,
    #[module(skip)]
    config: ResNetConfig,
    #[module(skip)]
    classes: usize,
}

impl ResNet {
    /// Builds the model from converted weights (`resnet.*`, `resnet.fc.*`); every tensor must
    /// be used. The model holds no trainable parameters.
    pub fn load(w: &Weights, config: ResNetConfig, classes: usize, device: &Device) -> Result<Self, ClassifierError> {
        if config.layers.contains(&0) || config.width == 0 || classes == 0 {
            return Err(ClassifierError::Config(format!("not a ResNet: {config:?} with {classes} outputs")));
        }
        let m = ResNet {
            resnet: ResNetBackbone::load(&w.pp("resnet"), &config, device)?,
            fc: load_linear(&w.pp("resnet").pp("fc"), [config.out_channels(), classes], device)?,
            config,
            classes,
        };
        w.finish()?;
        Ok(if w.is_trainable() { m } else { m.no_grad() })
    }

    /// The backbone sizes.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Every tensor of a converted decision ResNet.
    pub fn expected_tensors(config: &ResNetConfig, classes: usize) -> BTreeMap<String, Vec<usize>> {
        let mut t = config.expected_tensors("resnet");
        t.insert("resnet.fc.weight".into(), vec![classes, config.out_channels()]);
        t.insert("resnet.fc.bias".into(), vec![classes]);
        t
    }
}

impl DecisionModel for ResNet {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.resnet.forward(images);
        let [b, c, h, w] = x.dims();
        self.fc.forward(x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]))
    }

    fn num_outputs(&self) -> usize {
        self.classes
    }

    fn check_input_size(&self, height: usize, width: usize) -> Result<(), ClassifierError> {
        if height < 32 || width < 32 {
            return Err(ClassifierError::Input(format!(
                "a {width}x{height} image is too small for this ResNet (at least 32x32 pixels)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// A random tiny decision ResNet: logits `[B, K]`, finite, equal to the classifier on
    /// the backbone's pooled features, and small images refused.
    #[test]
    fn random_resnet_shapes_and_head() {
        let device = Device::flex();
        let config = ResNetConfig { block: BlockKind::Basic, layers: [1, 1, 1, 1], width: 4, dilate: [false; 3] };
        let w = Weights::random(&ResNet::expected_tensors(&config, 2), &BTreeMap::new(), 4);
        let m = ResNet::load(&w, config, 2, &device).unwrap();
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Uniform(-1.0, 1.0), &device);
        let logits = m.logits(x.clone());
        assert_eq!(logits.dims(), [2, 2]);
        let f = m.resnet.forward(x);
        let [b, c, h, wd] = f.dims();
        let pooled = f.reshape([b, c, h * wd]).mean_dim(2).reshape([b, c]);
        let (a, e) = (steex_nn::host(logits), steex_nn::host(m.fc.forward(pooled)));
        assert!(a.iter().zip(&e).all(|(x, y)| x.is_finite() && (x - y).abs() < 1e-6));
        assert!(m.check_input_size(16, 64).is_err() && m.check_input_size(32, 32).is_ok());
    }
}
