//! Any published decision model, chosen by the `kind` a converted file records.

use burn::tensor::{Device, Tensor};
use steex_nn::Weights;

use crate::decision::{DecisionModel, default_output_names};
use crate::densenet::{self, DenseNet, DenseNetConfig};
use crate::error::ClassifierError;
use crate::resnet::{self, ResNet, ResNetConfig};

/// A DenseNet or ResNet decision model loaded from a `weights-convert densenet|resnet`
/// file, with its output names.
#[derive(Debug)]
pub struct AnyClassifier {
    model: Model,
    names: Vec<String>,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one model, built once and held
enum Model {
    DenseNet(DenseNet),
    ResNet(ResNet),
}

impl AnyClassifier {
    /// Builds the model the file's metadata names (`kind` densenet or resnet).
    pub fn from_weights(w: &Weights, device: &Device) -> Result<Self, ClassifierError> {
        let kind = w.kind(&[densenet::KIND, resnet::KIND], "a decision model (kind densenet or resnet)")?;
        let model = match kind.as_str() {
            densenet::KIND => Model::DenseNet(DenseNet::load(w, DenseNetConfig::from_metadata(w)?, device)?),
            // The only other kind `Weights::kind` lets through.
            _ => Model::ResNet(ResNet::load(w, ResNetConfig::from_metadata(w)?, w.meta("classes")?, device)?),
        };
        let k = match &model {
            Model::DenseNet(m) => m.num_outputs(),
            Model::ResNet(m) => m.num_outputs(),
        };
        let preset: Option<String> = w.meta("preset").ok();
        let listed: Option<Vec<String>> = w
            .metadata()
            .get("names")
            .map(|n| n.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|n| n.len() == k);
        let names = match preset.as_deref() {
            _ if listed.is_some() => listed.unwrap_or_default(),
            Some("bdd") => default_output_names(4),
            Some(_) => default_output_names(3),
            None => default_output_names(k),
        };
        Ok(AnyClassifier { model, names })
    }

    /// Output names (the preset's attribute names, else by output count).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn inner(&self) -> &dyn DecisionModel {
        match &self.model {
            Model::DenseNet(m) => m,
            Model::ResNet(m) => m,
        }
    }
}

impl DecisionModel for AnyClassifier {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.inner().logits(images)
    }
    fn num_outputs(&self) -> usize {
        self.inner().num_outputs()
    }
    fn check_input_size(&self, height: usize, width: usize) -> Result<(), ClassifierError> {
        self.inner().check_input_size(height, width)
    }
}
