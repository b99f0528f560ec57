//! One explanation of a query by the [`Engine`]: a request's settings checked
//! ([`Engine::job_settings`]) and the optimisation run with a per-step callback that sees the
//! score, gets the image of the codes every `frame_every` steps and may stop it
//! ([`Engine::explain`]).

use std::ops::ControlFlow;

use burn::tensor::{Tensor, TensorData};
use steex_classifier::{DecisionModel, OutputKind};
use steex_explain::presets::resolve;
use steex_explain::{Objective, Optimisation, StepReport, explain_steered};
use steex_io::{Array, LabelMap};

use super::engine::Engine;
use super::error::{ApiError, ApiResult};
use crate::record::region_change;
use crate::render::{difference_map, png, to_rgb};
use crate::results::ResultJson;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}
/// What a job asks for, checked ([`Engine::job_settings`]).
pub struct JobSettings {
    /// The explainer's settings.
    pub settings: steex_explain::ExplainSettings,
    /// An intermediate image every this many steps (0: none).
    pub frame_every: usize,
}

/// One step as the job sees it.
pub struct StepUpdate<'a> {
    /// The explainer's report (batch of one).
    pub report: &'a StepReport,
    /// PNG of the codes reached after this step, when it is a frame step.
    pub frame: Option<Vec<u8>>,
}

/// The outcome of one explanation: the record and its pictures.
pub struct Outcome {
    /// As `result.json` (with `region_change`).
    pub result: ResultJson,
    /// PNGs: query, reconstruction, counterfactual, difference (|cf - rec|, scaled).
    pub images: [Vec<u8>; 4],
}

/// The names of the four result images, in [`Outcome::images`]'s order.
pub const IMAGE_NAMES: [&str; 4] = ["query", "reconstruction", "counterfactual", "difference"];

impl Engine {
    /// The explainer's settings of a request, checked.
    #[allow(clippy::too_many_arguments)]
    pub fn job_settings(
        &self,
        attribute: Option<&str>,
        target: Option<u8>,
        regions: Option<&[String]>,
        steps: Option<usize>,
        lr: Option<f64>,
        lambda_prox: Option<f64>,
        early_stop: Option<usize>,
        frame_every: Option<usize>,
    ) -> ApiResult<JobSettings> {
        let d = &self.info.defaults;
        let steps = steps.unwrap_or(d.steps);
        if !(1..=2000).contains(&steps) {
            return Err(bad(format!("steps {steps}: expected 1 to 2000")));
        }
        let lr = lr.unwrap_or(d.lr);
        if !(lr.is_finite() && lr > 0.0 && lr <= 10.0) {
            return Err(bad(format!("lr {lr}: expected a number in (0, 10]")));
        }
        let lambda_prox = lambda_prox.unwrap_or(d.lambda_prox);
        if !(lambda_prox.is_finite() && (0.0..=1000.0).contains(&lambda_prox)) {
            return Err(bad(format!("lambda_prox {lambda_prox}: expected a number in [0, 1000]")));
        }
        if let Some(t) = target
            && t > 1
        {
            return Err(bad(format!("target {t}: expected 0 or 1")));
        }
        let attrs = &self.info.attributes;
        let attribute = match attribute {
            Some(a) => resolve(&[a.to_string()], attrs, "attribute").map_err(|e| bad(format!("attribute: {e}")))?[0],
            None => 0,
        };
        let regions = match regions {
            None => None,
            Some([]) => return Err(bad("regions: choose at least one region (or leave it out: all regions)")),
            Some(r) => Some(resolve(r, &self.regions_all, "region").map_err(|e| bad(format!("regions: {e}")))?),
        };
        // At most 200 frames, whatever the steps.
        let frame_every = match frame_every.unwrap_or(d.frame_every) {
            0 => 0,
            k => k.max(steps.div_ceil(200)),
        };
        let optimisation =
            Optimisation { steps, lr, adam_eps: d.adam_eps, lambda_prox, noise: self.noise, early_stop, target };
        let mut settings = optimisation.settings(attribute, regions);
        if self.c.output_kind() == OutputKind::Softmax {
            settings.objective = Objective::Class { class: attribute };
            settings.target = None;
        }
        Ok(JobSettings { settings, frame_every })
    }

    /// Explains `image` with its `labels`; `control` sees every step (with a rendered
    /// frame every `frame_every` steps) and may stop the optimisation.
    pub fn explain(
        &self,
        image: &Array,
        labels: &LabelMap,
        job: &JobSettings,
        control: &mut dyn FnMut(StepUpdate) -> ControlFlow<()>,
    ) -> ApiResult<Outcome> {
        let t0 = std::time::Instant::now();
        let (h, w) = self.size();
        let device = &self.device;
        let mask = self.g.mask(labels.to_tensor(device)).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        let l = self.regions_all.len();
        let settings = &job.settings;
        let mut observer = |r: &StepReport, z: &[f32]| {
            let frame =
                (job.frame_every > 0 && r.step.is_multiple_of(job.frame_every)).then(|| self.render(&mask, z, l));
            control(StepUpdate { report: r, frame: frame.flatten() })
        };
        let e = explain_steered(&self.g, &self.c, image.to_tensor::<4>(device), &mask, settings, &mut observer)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let arrays = crate::run::split_explanation(&e).swap_remove(0);
        let mut result = ResultJson::new(
            &e.images[0],
            settings,
            &self.info.attributes,
            &self.regions_all,
            self.info.preset.as_deref(),
            self.inputs.clone(),
        );
        result.region_change = region_change(
            &arrays.counterfactual.data,
            &arrays.reconstruction.data,
            &labels.labels,
            &arrays.z_initial.data,
            &arrays.z_final.data,
            &self.regions_all,
        );
        result.seconds = t0.elapsed().as_secs_f64();
        let (diff, _) = difference_map(&arrays.counterfactual.data, &arrays.reconstruction.data, h, w);
        let images = [
            png(&to_rgb(&image.data, h, w)),
            png(&to_rgb(&arrays.reconstruction.data, h, w)),
            png(&to_rgb(&arrays.counterfactual.data, h, w)),
            png(&diff),
        ];
        Ok(Outcome { result, images })
    }

    /// The generator's image of codes `z` (`[1, L, S]` flat) as PNG; `None` if it fails.
    fn render(&self, mask: &steex_sean::SemanticMask, z: &[f32], l: usize) -> Option<Vec<u8>> {
        let s = z.len() / l.max(1);
        let zt = Tensor::<3>::from_data(TensorData::new(z.to_vec(), [1, l, s]), &self.device);
        let img = self.g.generate(mask, zt, self.noise).ok()?;
        let (h, w) = self.size();
        Some(png(&to_rgb(&steex_nn::host(img.detach()), h, w)))
    }
}
