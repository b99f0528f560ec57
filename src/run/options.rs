//! The options every explaining command shares, and the one way from them to an
//! [`ExplainSettings`].

use std::path::PathBuf;

use steex_explain::{ExplainSettings, Optimisation};
use steex_sean::NoiseMode;

/// The models and optimisation options `steex explain` and `steex explain-dir` share.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplainOptions {
    /// Generator weights (`weights-convert sean`).
    #[arg(long)]
    pub generator: PathBuf,
    /// Decision model weights (`weights-convert densenet|resnet`).
    #[arg(long)]
    pub classifier: PathBuf,
    /// Decision output to explain, by name (`smile`) or id; default: the preset's.
    #[arg(long)]
    pub attribute: Option<String>,
    /// Several attribute targets of a sigmoid model at once, by name or id
    /// (`smile=1,young=0`): loss the sum of their cross-entropies, success when all are reached.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["attribute", "target"])]
    pub attributes: Vec<String>,
    /// Softmax models: explain toward this class (name or id): cross-entropy toward it,
    /// success when it is the argmax.
    #[arg(long, conflicts_with_all = ["attribute", "target", "attributes", "away_from_class"])]
    pub target_class: Option<String>,
    /// Softmax models: explain away from this class (name or id): loss `-log(1 - p)`,
    /// success when the argmax is any other class.
    #[arg(long, conflicts_with_all = ["attribute", "target", "attributes"])]
    pub away_from_class: Option<String>,
    /// Only these regions may change, by name (`mouth,hair`).
    #[arg(long, value_delimiter = ',', conflicts_with = "region_ids")]
    pub regions: Vec<String>,
    /// Only these label ids may change (`10,13`).
    #[arg(long, value_delimiter = ',')]
    pub region_ids: Vec<usize>,
    /// Adam updates.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Weight of the proximity loss.
    #[arg(long, default_value_t = 0.3)]
    pub lambda_prox: f64,
    /// ACE noise: off, reference (fresh draws, as published) or seed:N.
    #[arg(long, default_value = "seed:0")]
    pub noise: NoiseMode,
    /// Stop once the decision has flipped and stayed flipped for K steps.
    #[arg(long)]
    pub early_stop: Option<usize>,
    /// Ask for this decision (0 or 1) instead of the opposite of the query's.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub target: Option<u8>,
    /// Names of regions and attributes: celeba, celebamhq or bdd (default: from the
    /// weights' metadata, else from the label and output counts).
    #[arg(long)]
    pub preset: Option<String>,
}

impl ExplainOptions {
    /// How the codes are optimised (the published Adam but for `--lr`).
    pub fn optimisation(&self) -> Optimisation {
        Optimisation {
            steps: self.steps,
            lr: self.lr,
            adam_eps: None,
            lambda_prox: self.lambda_prox,
            noise: self.noise,
            early_stop: self.early_stop,
            target: self.target,
        }
    }

    /// The explainer's settings for output `attribute` and `regions` (resolved from the
    /// names by [`crate::run::Models::load`]).
    pub fn settings(&self, attribute: usize, regions: Option<Vec<usize>>) -> ExplainSettings {
        self.optimisation().settings(attribute, regions)
    }
}
