//! The architectures `steex train classifier` builds: DenseNet121 (the published decision
//! model), torchvision's ResNet-18..152, and reduced versions of either for tests, with
//! torchvision's initialisation and the metadata `weights-convert` writes.

use std::collections::BTreeMap;

use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};
use steex_classifier::densenet::{self, DenseNetConfig};
use steex_classifier::resnet::{self, ResNet, ResNetConfig};
use steex_classifier::{AnyClassifier, OutputKind};
use steex_nn::Weights;

use crate::error::TrainError;
use crate::params::HostTensors;

/// A decision-model architecture (its output count comes later, from the attributes).
#[derive(Debug, Clone, PartialEq)]
pub enum Arch {
    /// torchvision's DenseNet with these sizes (`classes` is set by [`Arch::config`]).
    DenseNet(DenseNetConfig),
    /// torchvision's ResNet backbone with these sizes.
    ResNet(ResNetConfig),
}

impl std::str::FromStr for Arch {
    type Err = String;

    /// `densenet121`, `resnet18|34|50|101|152`, or a reduced model with options after a
    /// colon: `densenet121:growth=4,blocks=2-2,init=8,bn=2`, `resnet18:width=8`.
    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.split_once(':').map_or(s, |(n, _)| n);
        let opts = opts_of(s)?;
        let num = |k: &str, v: &str| v.parse::<usize>().ok().filter(|&n| n > 0).ok_or(format!("--arch {s}: {k}={v}"));
        let mut arch = match name {
            "densenet121" => Arch::DenseNet(DenseNetConfig::densenet121(1)),
            _ => match name.strip_prefix("resnet").and_then(|d| d.parse().ok()).and_then(ResNetConfig::depth) {
                Some(c) => Arch::ResNet(c),
                None => {
                    return Err(format!(
                        "--arch {s}: expected densenet121 or resnet18, resnet34, resnet50, resnet101, resnet152"
                    ));
                }
            },
        };
        for (k, v) in opts {
            match (&mut arch, k) {
                (Arch::DenseNet(c), "growth") => c.growth_rate = num(k, v)?,
                (Arch::DenseNet(c), "init") => c.num_init_features = num(k, v)?,
                (Arch::DenseNet(c), "bn") => c.bn_size = num(k, v)?,
                (Arch::DenseNet(c), "blocks") => {
                    c.block_config = v.split('-').map(|b| num(k, b)).collect::<Result<_, _>>()?;
                }
                (Arch::ResNet(c), "width") => c.width = num(k, v)?,
                _ => return Err(format!("--arch {s}: unknown option `{k}` for {name}")),
            }
        }
        Ok(arch)
    }
}

/// The `key=value` options after the colon of an `--arch` value.
fn opts_of(s: &str) -> Result<BTreeMap<&str, &str>, String> {
    let Some((_, opts)) = s.split_once(':') else { return Ok(BTreeMap::new()) };
    opts.split(',')
        .filter(|o| !o.is_empty())
        .map(|o| o.split_once('=').ok_or(format!("--arch {s}: expected key=value, got `{o}`")))
        .collect()
}

impl Arch {
    /// Every tensor of the model with `classes` outputs, in the published layout.
    pub fn expected_tensors(&self, classes: usize) -> BTreeMap<String, Vec<usize>> {
        match self {
            Arch::DenseNet(c) => DenseNetConfig { classes, ..c.clone() }.expected_tensors(),
            Arch::ResNet(c) => ResNet::expected_tensors(c, classes),
        }
    }

    /// The metadata `weights-convert densenet|resnet` writes for this model with these
    /// output names (kind, configuration, `classes`, `output` sigmoid), and the names.
    pub fn metadata(&self, names: &[String]) -> BTreeMap<String, String> {
        let classes = names.len();
        let mut m = match self {
            Arch::DenseNet(c) => {
                let mut m = DenseNetConfig { classes, ..c.clone() }.to_metadata();
                m.insert("kind".into(), densenet::KIND.into());
                m
            }
            Arch::ResNet(c) => {
                let mut m = c.to_metadata();
                m.insert("classes".into(), classes.to_string());
                m.insert("kind".into(), resnet::KIND.into());
                m
            }
        };
        m.insert("output".into(), OutputKind::Sigmoid.name().into());
        m.insert("names".into(), names.join(","));
        m.insert("converter".into(), format!("steex train {}", env!("CARGO_PKG_VERSION")));
        m
    }

    /// torchvision's initialisation, deterministic for `seed`: convolutions Kaiming-normal
    /// (DenseNet: fan in; ResNet: fan out, as `torchvision.models.ResNet` does), batch norms
    /// weight 1, bias 0, running mean 0, variance 1; the classifier `U(-k, k)`,
    /// `k = 1/sqrt(in)` (DenseNet's bias 0).
    pub fn init(&self, classes: usize, seed: u64) -> HostTensors {
        let mut rng = StdRng::seed_from_u64(seed);
        let head = match self {
            Arch::DenseNet(_) => "classifier.",
            Arch::ResNet(_) => "resnet.fc.",
        };
        self.expected_tensors(classes)
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let values = if name.ends_with(".running_var") {
                    vec![1.0; n]
                } else if name.ends_with(".running_mean") {
                    vec![0.0; n]
                } else if shape.len() == 4 {
                    let fan = match self {
                        Arch::DenseNet(_) => shape[1] * shape[2] * shape[3],
                        Arch::ResNet(_) => shape[0] * shape[2] * shape[3],
                    };
                    let normal = Normal::new(0.0f32, (2.0 / fan as f32).sqrt()).expect("a finite std");
                    (0..n).map(|_| normal.sample(&mut rng)).collect()
                } else if name.starts_with(head) {
                    let fan_in = if name.ends_with(".weight") { shape[1] } else { self.features() };
                    if matches!(self, Arch::DenseNet(_)) && name.ends_with(".bias") {
                        vec![0.0; n]
                    } else {
                        let k = 1.0 / (fan_in as f32).sqrt();
                        let u = Uniform::new_inclusive(-k, k).expect("a finite range");
                        (0..n).map(|_| u.sample(&mut rng)).collect()
                    }
                } else if name.ends_with(".weight") {
                    vec![1.0; n]
                } else {
                    vec![0.0; n]
                };
                (name, (shape, values))
            })
            .collect()
    }

    /// Channels entering the classifier.
    fn features(&self) -> usize {
        match self {
            Arch::DenseNet(c) => DenseNetConfig { classes: 1, ..c.clone() }.expected_tensors()["classifier.weight"][1],
            Arch::ResNet(c) => c.out_channels(),
        }
    }

    /// The model the weights make (their metadata names the kind).
    pub fn build(weights: &Weights, device: &Device) -> Result<AnyClassifier, TrainError> {
        AnyClassifier::from_weights(weights, device).map_err(|e| TrainError::Model(e.to_string()))
    }

    /// The architecture a trained file's metadata records, with its output count.
    pub fn from_metadata(w: &Weights) -> Result<(Self, usize), TrainError> {
        let kind = w.kind(&[densenet::KIND, resnet::KIND], "a decision model (kind densenet or resnet)")?;
        if kind == densenet::KIND {
            let c = DenseNetConfig::from_metadata(w)?;
            let k = c.classes;
            Ok((Arch::DenseNet(c), k))
        } else {
            Ok((Arch::ResNet(ResNetConfig::from_metadata(w)?), w.meta("classes")?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_and_options_parse() {
        assert_eq!("densenet121".parse::<Arch>().unwrap(), Arch::DenseNet(DenseNetConfig::densenet121(1)));
        assert_eq!("resnet50".parse::<Arch>().unwrap(), Arch::ResNet(ResNetConfig::resnet50()));
        let Arch::DenseNet(c) = "densenet121:growth=4,blocks=2-3,init=8,bn=2".parse::<Arch>().unwrap() else {
            panic!("a densenet")
        };
        assert_eq!((c.growth_rate, c.block_config, c.num_init_features, c.bn_size), (4, vec![2, 3], 8, 2));
        let Arch::ResNet(c) = "resnet18:width=8".parse::<Arch>().unwrap() else { panic!("a resnet") };
        assert_eq!(c.width, 8);
        for bad in ["vgg16", "resnet20", "resnet18:growth=2", "densenet121:growth=0", "densenet121:growth"] {
            assert!(bad.parse::<Arch>().is_err(), "{bad}");
        }
    }

    #[test]
    fn init_follows_torchvision() {
        let arch: Arch = "resnet18:width=4".parse().unwrap();
        let v = arch.init(3, 5);
        assert_eq!(v, arch.init(3, 5), "deterministic");
        let (shape, w) = &v["resnet.conv1.weight"];
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        let want = (2.0 / (shape[0] * 49) as f32).sqrt();
        assert!((std / want - 1.0).abs() < 0.15, "{std} vs {want}");
        assert!(v["resnet.bn1.weight"].1.iter().all(|&x| x == 1.0));
        assert!(v["resnet.bn1.running_var"].1.iter().all(|&x| x == 1.0));
        assert!(v["resnet.fc.bias"].1.iter().any(|&x| x != 0.0));
    }
}
