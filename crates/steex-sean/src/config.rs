//! Sizes of a SEAN generator and the three published presets.

use std::collections::BTreeMap;

use burn::config::Config;

use crate::error::SeanError;

/// Everything that sizes a SEAN generator (`num_upsampling_layers` "normal": 5 doublings);
/// the defaults are the published widths. Named constructors: [`SeanConfig::celeba`],
/// [`SeanConfig::celebamhq`], [`SeanConfig::bdd`]; random weights: [`SeanConfig::init`].
#[derive(Config, Debug, PartialEq)]
pub struct SeanConfig {
    /// Number of semantic labels `L` (19 for faces, 20 for BDD).
    pub labels: usize,
    /// Base width `ngf` (64 published).
    #[config(default = 64)]
    pub ngf: usize,
    /// Style vector length `S` (512 published).
    #[config(default = 512)]
    pub style_length: usize,
    /// Output width in pixels (`crop_size`); a multiple of 32.
    pub width: usize,
    /// Width / height (1, square, by default).
    #[config(default = 1.0)]
    pub aspect_ratio: f64,
    /// Hidden width of the SPADE branch ([`SPADE_HIDDEN`], 128, in the published code; the
    /// synthetic world's tiny generator uses less).
    #[config(default = 128)]
    pub spade_hidden: usize,
    /// Base width of the style encoder (`Zencoder(ngf=...)`, [`ENCODER_NGF`] = 32
    /// published): its convolutions are `3 -> n -> 2n -> 4n`, the transposed one `4n -> 8n`,
    /// the last `8n -> S`.
    #[config(default = 32)]
    pub encoder_ngf: usize,
}

/// Hidden width of the SPADE branch in the published code.
pub const SPADE_HIDDEN: usize = 128;
/// Base width of the style encoder in the published code (its last hidden layer is 8 times
/// that: 256).
pub const ENCODER_NGF: usize = 32;

impl SeanConfig {
    /// The generator with random weights (seed 0, see [`crate::SeanGenerator::random`]).
    pub fn init(&self, device: &burn::tensor::Device) -> Result<crate::SeanGenerator, SeanError> {
        crate::SeanGenerator::random(self.clone(), 0, device)
    }

    /// CelebA: 128 x 128, 19 labels.
    pub fn celeba() -> Self {
        SeanConfig {
            labels: 19,
            ngf: 64,
            style_length: 512,
            width: 128,
            aspect_ratio: 1.0,
            spade_hidden: SPADE_HIDDEN,
            encoder_ngf: ENCODER_NGF,
        }
    }
    /// CelebAMask-HQ: 256 x 256, 19 labels.
    pub fn celebamhq() -> Self {
        SeanConfig {
            labels: 19,
            ngf: 64,
            style_length: 512,
            width: 256,
            aspect_ratio: 1.0,
            spade_hidden: SPADE_HIDDEN,
            encoder_ngf: ENCODER_NGF,
        }
    }
    /// BDD100k: 512 x 256, 20 labels.
    pub fn bdd() -> Self {
        SeanConfig {
            labels: 20,
            ngf: 64,
            style_length: 512,
            width: 512,
            aspect_ratio: 2.0,
            spade_hidden: SPADE_HIDDEN,
            encoder_ngf: ENCODER_NGF,
        }
    }
    /// A preset by name (`celeba`, `celebamhq`, `bdd`).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "celeba" => Some(Self::celeba()),
            "celebamhq" => Some(Self::celebamhq()),
            "bdd" => Some(Self::bdd()),
            _ => None,
        }
    }

    /// Start size `(sh, sw)` of the trunk: `sw = width / 32`, `sh = round(sw / aspect)`.
    pub fn start_size(&self) -> (usize, usize) {
        let sw = self.width / 32;
        ((sw as f64 / self.aspect_ratio).round() as usize, sw)
    }

    /// Output image size `(height, width)`.
    pub fn image_size(&self) -> (usize, usize) {
        let (sh, sw) = self.start_size();
        (sh * 32, sw * 32)
    }

    /// Checks the sizes make a model.
    pub fn validate(&self) -> Result<(), SeanError> {
        if self.labels == 0
            || self.ngf == 0
            || self.style_length == 0
            || self.spade_hidden == 0
            || self.encoder_ngf == 0
        {
            return Err(SeanError::Config(format!(
                "labels, ngf, style length, SPADE and encoder widths must be positive: {self:?}"
            )));
        }
        if self.width < 32 || !self.width.is_multiple_of(32) {
            return Err(SeanError::Config(format!("width {} is not a positive multiple of 32", self.width)));
        }
        if !(self.aspect_ratio.is_finite() && self.aspect_ratio > 0.0) || self.start_size().0 == 0 {
            return Err(SeanError::Config(format!("aspect ratio {} gives no image", self.aspect_ratio)));
        }
        Ok(())
    }

    /// The residual blocks in forward order: `(name, fin, fout, has_style)`.
    pub fn blocks(&self) -> Vec<(&'static str, usize, usize, bool)> {
        let nf = self.ngf;
        vec![
            ("head_0", 16 * nf, 16 * nf, true),
            ("G_middle_0", 16 * nf, 16 * nf, true),
            ("G_middle_1", 16 * nf, 16 * nf, true),
            ("up_0", 16 * nf, 8 * nf, true),
            ("up_1", 8 * nf, 4 * nf, true),
            ("up_2", 4 * nf, 2 * nf, true),
            ("up_3", 2 * nf, nf, false),
        ]
    }

    /// Every tensor of a converted generator (spectral norm resolved, unused buffers
    /// dropped) with its shape in PyTorch's layout: what `weights-convert sean` checks and
    /// what [`crate::SeanGenerator::load`] takes.
    pub fn expected_tensors(&self) -> BTreeMap<String, Vec<usize>> {
        let (l, s) = (self.labels, self.style_length);
        let mut t = BTreeMap::new();
        let conv = |t: &mut BTreeMap<String, Vec<usize>>, p: &str, cin: usize, cout: usize, k: usize, bias: bool| {
            t.insert(format!("{p}.weight"), vec![cout, cin, k, k]);
            if bias {
                t.insert(format!("{p}.bias"), vec![cout]);
            }
        };
        let e = self.encoder_ngf;
        for (i, (cin, cout)) in [(3, e), (e, 2 * e), (2 * e, 4 * e)].into_iter().enumerate() {
            conv(&mut t, &format!("Zencoder.model.{}", 1 + 3 * i), cin, cout, 3, true);
        }
        // ConvTranspose2d weight is [in, out, k, k].
        t.insert("Zencoder.model.10.weight".into(), vec![4 * e, 8 * e, 3, 3]);
        t.insert("Zencoder.model.10.bias".into(), vec![8 * e]);
        conv(&mut t, "Zencoder.model.14", 8 * e, s, 3, true);
        conv(&mut t, "fc", l, 16 * self.ngf, 3, true);
        for (name, fin, fout, style) in self.blocks() {
            let fmid = fin.min(fout);
            conv(&mut t, &format!("{name}.conv_0"), fin, fmid, 3, true);
            conv(&mut t, &format!("{name}.conv_1"), fmid, fout, 3, true);
            let mut aces = vec![("ace_0", fin), ("ace_1", fmid)];
            if fin != fout {
                conv(&mut t, &format!("{name}.conv_s"), fin, fout, 1, false);
                aces.push(("ace_s", fin));
            }
            for (ace, c) in aces {
                let p = format!("{name}.{ace}");
                t.insert(format!("{p}.noise_var"), vec![c]);
                t.insert(format!("{p}.param_free_norm.running_mean"), vec![c]);
                t.insert(format!("{p}.param_free_norm.running_var"), vec![c]);
                conv(&mut t, &format!("{p}.Spade.mlp_shared.0"), l, self.spade_hidden, 3, true);
                conv(&mut t, &format!("{p}.Spade.mlp_gamma"), self.spade_hidden, c, 3, true);
                conv(&mut t, &format!("{p}.Spade.mlp_beta"), self.spade_hidden, c, 3, true);
                if style {
                    t.insert(format!("{p}.blending_gamma"), vec![1]);
                    t.insert(format!("{p}.blending_beta"), vec![1]);
                    for j in 0..l {
                        t.insert(format!("{p}.fc_mu{j}.weight"), vec![s, s]);
                        t.insert(format!("{p}.fc_mu{j}.bias"), vec![s]);
                    }
                    conv(&mut t, &format!("{p}.conv_gamma"), s, c, 3, true);
                    conv(&mut t, &format!("{p}.conv_beta"), s, c, 3, true);
                }
            }
        }
        conv(&mut t, "conv_img", self.ngf, 3, 3, true);
        t
    }

    /// Checkpoint tensors the model never uses: batch-norm counters, the SPADE branch's
    /// `param_free_norm` buffers, and `up_3`'s blending weights (it has no style branch).
    pub fn is_unused(name: &str) -> bool {
        name.ends_with("num_batches_tracked")
            || name.contains(".Spade.param_free_norm.")
            || (name.starts_with("up_3.") && name.contains(".blending_"))
    }

    /// The configuration as safetensors metadata entries.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let (h, w) = self.image_size();
        [
            ("labels", self.labels.to_string()),
            ("ngf", self.ngf.to_string()),
            ("style_length", self.style_length.to_string()),
            ("width", w.to_string()),
            ("height", h.to_string()),
            ("aspect_ratio", self.aspect_ratio.to_string()),
            ("spade_hidden", self.spade_hidden.to_string()),
            ("encoder_ngf", self.encoder_ngf.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The SPADE branch's width as the tensor shapes of a checkpoint determine it.
    pub fn infer_spade_hidden(shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<usize, String> {
        let n = "head_0.ace_0.Spade.mlp_shared.0.weight";
        shape(n).and_then(|s| s.first().copied()).ok_or_else(|| format!("missing tensor `{n}`"))
    }

    /// The style encoder's base width as the tensor shapes of a checkpoint determine it.
    pub fn infer_encoder_ngf(shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<usize, String> {
        let n = "Zencoder.model.1.weight";
        shape(n).and_then(|s| s.first().copied()).ok_or_else(|| format!("missing tensor `{n}`"))
    }

    /// Labels, ngf and style length as the tensor shapes of a checkpoint determine them
    /// (width and aspect ratio are not in the tensors). `shape` looks a tensor up by name.
    pub fn infer_from_shapes(shape: impl Fn(&str) -> Option<Vec<usize>>) -> Result<(usize, usize, usize), String> {
        let get = |n: &str, dim: usize| -> Result<usize, String> {
            let s = shape(n).ok_or_else(|| format!("missing tensor `{n}`"))?;
            s.get(dim).copied().ok_or_else(|| format!("tensor `{n}` has shape {s:?}"))
        };
        Ok((get("fc.weight", 1)?, get("conv_img.weight", 1)?, get("Zencoder.model.14.weight", 0)?))
    }
}
