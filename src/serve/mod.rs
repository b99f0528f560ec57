//! `steex serve`: a local explorer page and JSON API over the explainer.
//!
//! A server on axum and tokio that loads the models once (the bundled synthetic-world
//! models with `--demo`, or converted files), serves one page (HTML, JS and CSS embedded in
//! the binary, no framework, nothing fetched from elsewhere) and runs explanations one at a
//! time, queued, each on a blocking thread. It binds 127.0.0.1 unless told otherwise.
//!
//! # The API
//!
//! Every error is a status code with a JSON body `{"error": "..."}` naming what is at
//! fault: 400 a malformed request or a value out of range; 403 a request whose `Host` is not
//! a loopback name while the server listens on a loopback address (no DNS rebinding); 404
//! nothing of that name; 405 a route that exists, with another method; 409 a query with no label map yet; 413 a body over 16 MiB; 415 a
//! body of a `Content-Type` the route does not take (uploads: `image/png`, `image/jpeg` or
//! `application/octet-stream`; jobs: `application/json`; none of them a type another site's
//! page may send unasked) or that is not a PNG or JPEG; 422 an image that cannot be decoded
//! within the limits (at most 8192 x 8192 pixels, 256 MiB to decode) or a mask that does not
//! fit; 429 too many jobs waiting.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/info` | the models: `mode` (`demo`, `files`, or `results` with no models), `preset`, `height`, `width`, `regions` (`id`, `name`, `colour`), `attributes`, `output` (`sigmoid`/`softmax`), `segmenter`, `defaults` (`steps`, `lr`, `lambda_prox`, `adam_eps`, `frame_every`), `max_upload_bytes`, `results` |
//! | `GET /api/scenes` | `--demo` only: held-out scenes to pick, `{attribute, scenes: [{seed, stop, image}]}` |
//! | `GET /api/scenes/{seed}/image.png` | a scene's image |
//! | `POST /api/queries?scene=SEED` | a demo scene as a query (its true label map) |
//! | `POST /api/queries` | body: a PNG or JPEG's bytes; resized to the generator's size (bicubic), segmented if there is a segmenter, classified. 201 with the query: `id`, `source`, `width`, `height` (the upload's own), `attributes`, `probabilities`, `logits`, `labels_source` (`scene`, `segmenter`, `mask` or null), `regions_present` (`id`, `name`, `pixels`), and the addresses `image`, `labels` (8-bit ids) and `overlay` (coloured) |
//! | `PUT /api/queries/{id}/mask` | body: an 8-bit PNG label map of the image's aspect ratio (any size, resized nearest): replaces the label map |
//! | `GET /api/queries/{id}` and `/{image,labels,overlay}.png` | the query and its pictures |
//! | `POST /api/jobs` | body: `{"query": "q1", "regions": ["lamp"] (names or ids; left out: all), "attribute": "stop", "target": 0\|1, "steps", "lr", "lambda_prox", "early_stop", "frame_every"}` (all but `query` optional). 202 with `{job, status, position, events}`; `position` 0 runs next or now |
//! | `GET /api/jobs/{id}` | `status` (`queued`, `running`, `done`, `cancelled`, `failed`), `position` while queued, `step`, `steps`, `points` (per step: `step`, `score`, `loss_decision`, `loss_proximity`), `error`, `result` once there |
//! | `GET /api/jobs/{id}/events` | server-sent events, replayed from the start: `queued` `{position}` (again when it moves), `started` `{steps}`, `step` `{step, steps, score, loss_decision, loss_proximity, frame?}`, then one of `done`, `cancelled` (the result, if it had started) or `failed` `{error}`; the stream ends there |
//! | `DELETE /api/jobs/{id}` | cancels: a queued job leaves the queue, a running one stops after its current step (its result is of the steps run) |
//! | `GET /api/jobs/{id}/images/{query,reconstruction,counterfactual,difference}.png` | the result's images (difference: \|counterfactual - reconstruction\|, scaled) |
//! | `GET /api/jobs/{id}/frames/{k}.png` | the image of the codes every `frame_every` steps, for the slider |
//! | `GET /api/results` | `--results DIR`: `{dir, attribute, summary, images: [{image, status, reason, success, initial_score, final_score, score_change, steps_run, seconds, files}]}` |
//! | `GET /api/results/{image}/{file}` | a PNG of an image's result folder (`query`, `reconstruction`, `counterfactual`, `difference`, `report`, `mask`) |
//!
//! A result (`done`, `cancelled`, a job's `result`) is `{job, success, steps_run,
//! initial_probability, final_probability, images, frames: [{step, url}], result}` where
//! `result` is what `steex explain` writes as `result.json` (with `region_change`: per
//! region, its share of the pixel change and how far its code moved).

mod api;
mod engine;
mod error;
mod explain;
mod jobs;
mod queries;
mod results_dir;
mod upload;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::Device;

pub use api::{AppState, loopback_host_only, router};
pub use engine::{Engine, ModelInfo};
pub use error::ApiError;
pub use results_dir::{ResultsDir, plain_name};
pub use upload::{MAX_SIDE, MAX_UPLOAD_BYTES};

use crate::error::{Error, Result};

/// Which models a server explains with.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// The bundled synthetic-world models.
    Demo,
    /// Converted files.
    Files {
        /// `weights-convert sean` output.
        generator: PathBuf,
        /// `weights-convert densenet|resnet` output.
        classifier: PathBuf,
        /// `weights-convert deeplab` output, to segment uploads without a mask.
        segmenter: Option<PathBuf>,
    },
    /// No models: only `--results` is served.
    None,
}

/// What `steex serve` serves, and where.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The models.
    pub models: ModelSource,
    /// An `explain-dir` output folder to browse.
    pub results: Option<PathBuf>,
    /// The address to listen on (127.0.0.1: this machine only).
    pub bind: IpAddr,
    /// The port (0: any free one; the one taken is printed).
    pub port: u16,
}

/// The job runner of a server with models: [`Worker::run`] takes the queued jobs one at a
/// time until the server's state is dropped.
pub struct Worker {
    jobs: Arc<jobs::Jobs>,
    engine: Arc<Engine>,
    wake: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl Worker {
    /// Runs the jobs (spawn it on the server's runtime).
    pub async fn run(self) {
        jobs::worker(self.jobs, self.engine, self.wake).await
    }
}

/// The server's state from `options` and its job runner: the results folder checked, then
/// the models loaded (files' headers are checked before their tensors are read).
pub fn state(options: &ServeOptions, device: &Device) -> Result<(AppState, Option<Worker>)> {
    let results = match &options.results {
        Some(dir) => Some(Arc::new(ResultsDir::open(dir)?)),
        None => None,
    };
    let engine = match &options.models {
        ModelSource::Demo => Some(Arc::new(Engine::demo(device)?)),
        ModelSource::Files { generator, classifier, segmenter } => {
            Some(Arc::new(Engine::files(generator.clone(), classifier.clone(), segmenter.clone(), device)?))
        }
        ModelSource::None => None,
    };
    let (wake, rx) = tokio::sync::mpsc::unbounded_channel();
    let jobs = Arc::new(jobs::Jobs::default());
    let worker = engine.clone().map(|engine| Worker { jobs: jobs.clone(), engine, wake: rx });
    Ok((AppState { engine, queries: Default::default(), jobs, results, wake }, worker))
}

/// Runs `steex serve` until the process is stopped: checks the inputs, binds, loads the
/// models, prints the address (on stderr) and serves.
pub fn serve(options: &ServeOptions, device: &Device) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()
        .map_err(|e| Error::Argument(format!("cannot start the server's runtime: {e}")))?;
    let addr = SocketAddr::new(options.bind, options.port);
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr)).map_err(|e| {
        Error::Argument(format!("--bind {} --port {}: cannot listen there: {e}", options.bind, options.port))
    })?;
    let local = listener.local_addr().map_err(|e| Error::Argument(format!("--port {}: {e}", options.port)))?;
    let (app_state, worker) = state(options, device)?;
    if let Some(worker) = worker {
        runtime.spawn(worker.run());
    }
    let url = match local.ip() {
        IpAddr::V6(ip) => format!("http://[{ip}]:{}/", local.port()),
        IpAddr::V4(ip) => format!("http://{ip}:{}/", local.port()),
    };
    if local.ip().is_loopback() {
        eprintln!("steex serve: {url} (local only: listening on {} of this machine)", local.ip());
    } else {
        eprintln!(
            "steex serve: {url} (listening on {}: reachable from other machines; there is no authentication)",
            local.ip()
        );
    }
    let app = if local.ip().is_loopback() {
        router(app_state).layer(axum::middleware::from_fn(api::loopback_host_only))
    } else {
        router(app_state)
    };
    runtime
        .block_on(async move { axum::serve(listener, app).await })
        .map_err(|e| Error::Argument(format!("the server stopped: {e}")))
}
