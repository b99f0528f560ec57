//! What an explanation asks of the decision model ([`Objective`]): its decision loss, when
//! it is reached, and the one probability the progress reports follow.

use burn::tensor::activation::relu;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use steex_classifier::OutputKind;

/// One sigmoid output and the decision asked of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeTarget {
    /// Output id.
    pub output: usize,
    /// Decision asked for (0 or 1).
    pub target: u8,
}

/// What the explanation asks of the decision model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Objective {
    /// As published: output [`crate::ExplainSettings::attribute`] of a sigmoid model to
    /// [`crate::ExplainSettings::target`] (default: the opposite of the query's decision).
    /// Loss: its binary cross-entropy; reached when its sigmoid is on the target's side of 0.5.
    #[default]
    Attribute,
    /// Several outputs of a sigmoid model at once. Loss: the sum of their binary
    /// cross-entropies; reached when every one is on its target's side of 0.5.
    Attributes {
        /// The outputs and their targets.
        targets: Vec<AttributeTarget>,
    },
    /// A softmax model toward class `class`. Loss: cross-entropy toward it; reached when it
    /// is the argmax.
    Class {
        /// The class asked for.
        class: usize,
    },
    /// A softmax model away from class `class`. Loss: `-log(1 - p_class)`; reached when
    /// the argmax is any other class.
    AwayFromClass {
        /// The class to leave.
        class: usize,
    },
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
}

/// Decision loss per image in its stable form from the logit:
/// `softplus(l) - t l = relu(l) - t l + log(1 + exp(-|l|))`.
pub(crate) fn bce_with_logit(logit: Tensor<1>, target: Tensor<1>) -> Tensor<1> {
    relu(logit.clone()) - logit.clone() * target + logit.abs().neg().exp().log1p()
}

/// `log sum_j exp(x_j + offset_j)` per row of `[n, K]` logits, stable (`offset`: `[1, K]`
/// of 0 or a large negative number that leaves a class out).
fn log_sum_exp(logits: Tensor<2>, offset: Option<Tensor<2>>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let x = match offset {
        Some(o) => logits + o,
        None => logits,
    };
    let m = x.clone().max_dim(1).detach();
    (x - m.clone()).exp().sum_dim(1).log().add(m).reshape([n])
}

impl Objective {
    /// Whether this is the published single-attribute objective.
    pub fn is_published(&self) -> bool {
        *self == Objective::Attribute
    }

    /// Checks the objective fits a model of `k` outputs of kind `kind` (and `attribute`,
    /// for the published objective); `Err` says why not.
    pub fn check(&self, k: usize, kind: OutputKind, attribute: usize) -> Result<(), String> {
        let range = |what: &str, i: usize| {
            if i >= k {
                Err(format!("{what} {i} is out of range: the decision model has {k} outputs (0..={})", k - 1))
            } else {
                Ok(())
            }
        };
        match (self, kind) {
            (Objective::Attribute, OutputKind::Sigmoid) => range("attribute", attribute),
            (Objective::Attributes { targets }, OutputKind::Sigmoid) => {
                if targets.is_empty() {
                    return Err("no attribute targets given".into());
                }
                for t in targets {
                    range("attribute", t.output)?;
                    if t.target > 1 {
                        return Err(format!("target {} of attribute {}: expected 0 or 1", t.target, t.output));
                    }
                }
                Ok(())
            }
            (Objective::Class { class } | Objective::AwayFromClass { class }, OutputKind::Softmax) => {
                range("class", *class)
            }
            (Objective::Class { .. } | Objective::AwayFromClass { .. }, OutputKind::Sigmoid) => {
                Err("a class target needs a softmax decision model, and this one has independent sigmoid outputs \
                 (convert it with `--output softmax` if its outputs are one softmax)"
                    .into())
            }
            (_, OutputKind::Softmax) => Err(
                "this decision model has softmax outputs: ask for a class (a target class, or a class to move away \
                 from) instead of attribute targets"
                    .into(),
            ),
        }
    }

    /// Decision loss per image `[n]` from logits `[n, K]`; `attribute` and `target` (`[n]`,
    /// 0 or 1 per image) serve the published objective, whose loss is computed as published.
    pub fn loss(&self, logits: Tensor<2>, attribute: usize, target: Tensor<1>) -> Tensor<1> {
        let [n, k] = logits.dims();
        let device = logits.device();
        match self {
            Objective::Attribute => bce_with_logit(logits.slice([0..n, attribute..attribute + 1]).reshape([n]), target),
            Objective::Attributes { targets } => targets
                .iter()
                .map(|t| {
                    let l = logits.clone().slice([0..n, t.output..t.output + 1]).reshape([n]);
                    bce_with_logit(l, Tensor::<1>::full([n], t.target as f32, &device))
                })
                .reduce(|a, b| a + b)
                .unwrap_or_else(|| Tensor::zeros([n], &device)),
            Objective::Class { class } => {
                let picked = logits.clone().slice([0..n, *class..*class + 1]).reshape([n]);
                log_sum_exp(logits, None) - picked
            }
            Objective::AwayFromClass { class } => {
                // -log(1 - p_c) = logsumexp(all) - logsumexp(all but c).
                let mut off = vec![0f32; k];
                off[*class] = -1e9;
                let off = Tensor::<2>::from_data(TensorData::new(off, [1, k]), &device);
                log_sum_exp(logits.clone(), None) - log_sum_exp(logits, Some(off))
            }
        }
    }

    /// Whether one image's logits reach the objective (`target`: the image's decision asked
    /// of `attribute`, for the published objective).
    pub fn reached(&self, logits: &[f32], attribute: usize, target: u8) -> bool {
        match self {
            Objective::Attribute => (sigmoid(logits[attribute]) - target as f32).abs() < 0.5,
            Objective::Attributes { targets } => {
                targets.iter().all(|t| (sigmoid(logits[t.output]) - t.target as f32).abs() < 0.5)
            }
            Objective::Class { class } => argmax(logits) == *class,
            Objective::AwayFromClass { class } => argmax(logits) != *class,
        }
    }

    /// The probability progress reports follow: the attribute's sigmoid (the first
    /// attribute's for several), or the class's softmax probability.
    pub fn score(&self, logits: &[f32], attribute: usize) -> f32 {
        match self {
            Objective::Attribute => sigmoid(logits[attribute]),
            Objective::Attributes { targets } => targets.first().map_or(f32::NAN, |t| sigmoid(logits[t.output])),
            Objective::Class { class } | Objective::AwayFromClass { class } => {
                OutputKind::Softmax.probabilities(logits)[*class]
            }
        }
    }

    /// The `target` an [`crate::ImageResult`] records: the published decision asked for;
    /// the first attribute's target for several; 1 toward a class, 0 away from it.
    pub fn recorded_target(&self, published: u8) -> u8 {
        match self {
            Objective::Attribute => published,
            Objective::Attributes { targets } => targets.first().map_or(published, |t| t.target),
            Objective::Class { .. } => 1,
            Objective::AwayFromClass { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn losses(o: &Objective, logits: &[f32], k: usize) -> Vec<f32> {
        let device = Device::flex();
        let n = logits.len() / k;
        let l = Tensor::<2>::from_data(TensorData::new(logits.to_vec(), [n, k]), &device);
        steex_nn::host(o.loss(l, 0, Tensor::zeros([n], &device)))
    }

    /// Cross-entropy, away-from and summed BCE against their closed forms; success rules.
    #[test]
    fn losses_and_success_match_their_definitions() {
        let row = [0.5f32, -1.0, 2.0];
        let p = OutputKind::Softmax.probabilities(&row);
        let ce = losses(&Objective::Class { class: 1 }, &row, 3)[0];
        assert!((ce + p[1].ln()).abs() < 1e-5, "{ce}");
        let away = losses(&Objective::AwayFromClass { class: 2 }, &row, 3)[0];
        assert!((away + (1.0 - p[2]).ln()).abs() < 1e-5, "{away}");
        let t = vec![AttributeTarget { output: 0, target: 1 }, AttributeTarget { output: 2, target: 0 }];
        let multi = losses(&Objective::Attributes { targets: t.clone() }, &row, 3)[0];
        let want = -(sigmoid(0.5).ln()) - (1.0 - sigmoid(2.0)).ln();
        assert!((multi - want).abs() < 1e-5, "{multi} vs {want}");
        assert!(Objective::Class { class: 2 }.reached(&row, 0, 0));
        assert!(!Objective::AwayFromClass { class: 2 }.reached(&row, 0, 0));
        assert!(!Objective::Attributes { targets: t.clone() }.reached(&row, 0, 0));
        assert!(Objective::Attributes { targets: vec![t[0]] }.reached(&row, 0, 0));
        assert!(Objective::Class { class: 1 }.check(3, OutputKind::Sigmoid, 0).is_err());
        assert!(Objective::Class { class: 3 }.check(3, OutputKind::Softmax, 0).unwrap_err().contains("out of range"));
        assert!(Objective::Attribute.check(3, OutputKind::Softmax, 0).is_err());
        let json = serde_json::to_string(&Objective::Class { class: 3 }).unwrap();
        assert_eq!(json, r#"{"kind":"class","class":3}"#);
    }
}
