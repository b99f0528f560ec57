//! The sizes of the models bundled with the synthetic world, and their file metadata (the
//! same keys `weights-convert` writes, so the files load like converted checkpoints).

use std::collections::BTreeMap;

use steex_classifier::resnet::{BlockKind, ResNet, ResNetConfig};
use steex_deeplab::DeepLabConfig;
use steex_sean::SeanConfig;

use crate::scene::{ATTRIBUTE, REGIONS, WIDTH};

/// Metadata key naming the world a file was trained on.
pub const WORLD_KEY: &str = "world";
/// Its value for this world.
pub const WORLD: &str = "steex-synth-street-v4";

/// A tiny SEAN: 5 labels, ngf 4, style length 16, SPADE width 16, encoder width 8, 64 x 64
/// (the published layout otherwise).
pub fn generator_config() -> SeanConfig {
    SeanConfig {
        labels: REGIONS.len(),
        ngf: 4,
        style_length: 16,
        width: WIDTH,
        aspect_ratio: 1.0,
        spade_hidden: 16,
        encoder_ngf: 8,
    }
}

/// A tiny ResNet (basic blocks, one per stage, stem width 8) with one output, `stop`.
pub fn classifier_config() -> ResNetConfig {
    ResNetConfig { block: BlockKind::Basic, layers: [1, 1, 1, 1], width: 8, dilate: [false; 3] }
}

/// A tiny DeepLabV3 (bottleneck ResNet backbone, one block per stage, stem width 4; the
/// torchvision head, 32 channels wide) with one class per region.
pub fn segmenter_config() -> DeepLabConfig {
    DeepLabConfig {
        backbone: ResNetConfig {
            block: BlockKind::Bottleneck,
            layers: [1, 1, 1, 1],
            width: 4,
            dilate: [false, true, true],
        },
        classes: REGIONS.len(),
        head: 32,
    }
}

fn with_common(mut m: BTreeMap<String, String>, kind: &str) -> BTreeMap<String, String> {
    m.insert("kind".into(), kind.into());
    m.insert(WORLD_KEY.into(), WORLD.into());
    m.insert("regions".into(), REGIONS.join(","));
    m
}

/// Generator tensors and metadata.
pub fn generator_spec() -> (BTreeMap<String, Vec<usize>>, BTreeMap<String, String>) {
    let c = generator_config();
    (c.expected_tensors(), with_common(c.to_metadata(), steex_sean::generator::KIND))
}

/// Classifier tensors and metadata.
pub fn classifier_spec() -> (BTreeMap<String, Vec<usize>>, BTreeMap<String, String>) {
    let c = classifier_config();
    let mut m = with_common(c.to_metadata(), steex_classifier::resnet::KIND);
    m.insert("classes".into(), "1".into());
    m.insert("names".into(), ATTRIBUTE.into());
    (ResNet::expected_tensors(&c, 1), m)
}

/// Segmenter tensors and metadata.
pub fn segmenter_spec() -> (BTreeMap<String, Vec<usize>>, BTreeMap<String, String>) {
    let c = segmenter_config();
    (c.expected_tensors(), with_common(c.to_metadata(), steex_deeplab::KIND))
}
