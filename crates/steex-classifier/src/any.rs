//! Any published decision model, chosen by the `kind` a converted file records.

use burn::tensor::{Device, Tensor};
use steex_nn::Weights;

use crate::decision::{DecisionModel, OutputKind, default_output_names};
use crate::densenet::{self, DenseNet, DenseNetConfig};
use crate::error::ClassifierError;
use crate::resnet::{self, ResNet, ResNetConfig};

/// A DenseNet or ResNet decision model loaded from a `weights-convert densenet|resnet`
/// file, with its output names.
#[derive(Debug)]
pub struct AnyClassifier {
    model: Model,
    names: Vec<String>,
    output: OutputKind,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one model, built once and held
enum Model {
    DenseNet(DenseNet),
    ResNet(ResNet),
}

impl AnyClassifier {
    /// Builds the model the file's metadata names (`kind` densenet or resnet); its output
    /// kind is the `output` metadata entry (`sigmoid`, the default, or `softmax`).
    pub fn from_weights(w: &Weights, device: &Device) -> Result<Self, ClassifierError> {
        let output = output_kind(&w.metadata())?;
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
        let names = output_names(&w.metadata(), k);
        Ok(AnyClassifier { model, names, output })
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
    fn output_kind(&self) -> OutputKind {
        self.output
    }
    fn check_input_size(&self, height: usize, width: usize) -> Result<(), ClassifierError> {
        self.inner().check_input_size(height, width)
    }
}

/// The output kind a converted file's metadata records (`output`: `sigmoid` or `softmax`;
/// absent: `sigmoid`, as in files written before it was recorded).
pub fn output_kind(metadata: &std::collections::BTreeMap<String, String>) -> Result<OutputKind, ClassifierError> {
    match metadata.get("output") {
        None => Ok(OutputKind::Sigmoid),
        Some(s) => s.parse().map_err(|e| ClassifierError::Config(format!("metadata entry `output`: {e}"))),
    }
}

/// The output names a converted file's metadata gives its `k` outputs: the `names` entry
/// (comma-separated) when it lists `k`, else the preset's attribute names, else by count.
pub fn output_names(metadata: &std::collections::BTreeMap<String, String>, k: usize) -> Vec<String> {
    let listed: Option<Vec<String>> =
        metadata.get("names").map(|n| n.split(',').map(str::to_string).collect::<Vec<_>>()).filter(|n| n.len() == k);
    match (listed, metadata.get("preset").map(String::as_str)) {
        (Some(l), _) => l,
        (None, Some("bdd")) => default_output_names(4),
        (None, Some(_)) => default_output_names(3),
        (None, None) => default_output_names(k),
    }
}
