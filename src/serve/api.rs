//! The HTTP routes: the page and its assets, the JSON API and the event stream (see the
//! module docs of [`super`] for the API).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::engine::Engine;
use super::error::{ApiError, ApiResult};
use super::explain::IMAGE_NAMES;
use super::jobs::{Jobs, Status, result_json};
use super::queries::{Queries, Query};
use super::results_dir::ResultsDir;
use super::upload::{decode_image, decode_mask, read_body};

/// Demo scenes listed by `GET /api/scenes`.
pub const DEMO_SCENES: u64 = 12;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The models (none: only `--results` is served).
    pub engine: Option<Arc<Engine>>,
    /// Uploaded images and chosen scenes.
    pub queries: Arc<Queries>,
    /// Explanation jobs.
    pub jobs: Arc<Jobs>,
    /// The `--results` folder.
    pub results: Option<Arc<ResultsDir>>,
    /// Wakes the job worker.
    pub wake: tokio::sync::mpsc::UnboundedSender<()>,
}

impl AppState {
    fn engine(&self) -> ApiResult<Arc<Engine>> {
        self.engine.clone().ok_or_else(|| {
            ApiError::NotFound("no models: start the server with --demo or --generator and --classifier".into())
        })
    }

    fn results(&self) -> ApiResult<Arc<ResultsDir>> {
        self.results.clone().ok_or_else(|| ApiError::NotFound("no results folder: start with --results DIR".into()))
    }

    fn query(&self, id: &str) -> ApiResult<Arc<Query>> {
        self.queries.get(id).ok_or_else(|| ApiError::NotFound(format!("query `{}`: unknown", id.escape_default())))
    }
}

/// The router of the page and the API over `state`.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", include_str!("assets/index.html"))))
        .route("/app.js", get(|| asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))))
        .route("/style.css", get(|| asset("text/css; charset=utf-8", include_str!("assets/style.css"))))
        .route("/api/info", get(info))
        .route("/api/scenes", get(scenes))
        .route("/api/scenes/{seed}/image.png", get(scene_image))
        .route("/api/queries", post(new_query))
        .route("/api/queries/{id}", get(get_query))
        .route("/api/queries/{id}/mask", axum::routing::put(put_mask))
        .route("/api/queries/{id}/{file}", get(query_file))
        .route("/api/jobs", post(new_job))
        .route("/api/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/jobs/{id}/images/{file}", get(job_image))
        .route("/api/jobs/{id}/frames/{file}", get(job_frame))
        .route("/api/results", get(results_list))
        .route("/api/results/{image}/{file}", get(results_file))
        .fallback(|| async { ApiError::NotFound("no such page or API route".into()) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::WrongMethod(format!("{method} is not taken here (see the API in the docs)"))
        })
        .with_state(state)
}

/// Answers only requests addressed to this machine by a loopback name (`Host:` localhost,
/// 127.x.x.x or [::1], any port): a server listening on 127.0.0.1 is then out of reach of a
/// web page whose own name was made to resolve to 127.0.0.1 (DNS rebinding).
pub async fn loopback_host_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if host_is_loopback(host) {
        next.run(request).await
    } else {
        ApiError::Forbidden(format!(
            "Host `{}`: this server answers requests to localhost or 127.0.0.1 only",
            host.escape_default()
        ))
        .into_response()
    }
}

/// `localhost`, a 127.x.x.x address or `[::1]`, with or without a port.
fn host_is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a body's declared type against `allowed`. None of them is a type a web page of
/// another origin may send without the browser asking this server first (which it does not
/// answer), so no other site can start jobs or upload through a visitor's browser.
fn content_type(headers: &HeaderMap, allowed: &[&str], what: &str) -> ApiResult<()> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if allowed.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(ApiError::Unsupported(format!(
            "{what}: Content-Type `{}`: send it as {}",
            given.escape_default(),
            allowed.join(" or ")
        )))
    }
}

async fn asset(content_type: &'static str, text: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], text).into_response()
}

fn png_response(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-cache")], bytes).into_response()
}

/// Runs model work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("the model work failed: {e}")))?
}

async fn info(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let mut v = match &s.engine {
        Some(e) => serde_json::to_value(e.info()).map_err(|e| ApiError::Internal(e.to_string()))?,
        None => json!({ "mode": "results" }),
    };
    v["results"] = json!(s.results.is_some());
    Ok(Json(v))
}

async fn scenes(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let e = s.engine()?;
    if e.info().mode != "demo" {
        return Err(ApiError::NotFound("demo scenes are served with --demo only".into()));
    }
    let first = steex_synth::scene::HELD_OUT_SEED;
    let list: Vec<Value> = (first..first + DEMO_SCENES)
        .map(|seed| {
            let sc = steex_synth::scene::scene(seed);
            json!({ "seed": seed, "stop": sc.stop, "image": format!("/api/scenes/{seed}/image.png") })
        })
        .collect();
    Ok(Json(json!({ "attribute": steex_synth::scene::ATTRIBUTE, "scenes": list })))
}

fn parse_seed(seed: &str) -> ApiResult<u64> {
    seed.parse()
        .map_err(|_| ApiError::BadRequest(format!("scene `{}`: expected a seed (a number)", seed.escape_default())))
}

async fn scene_image(State(s): State<AppState>, Path(seed): Path<String>) -> ApiResult<Response> {
    let e = s.engine()?;
    let seed = parse_seed(&seed)?;
    let q = e.scene_query(seed)?;
    Ok(png_response(crate::render::png(&crate::render::to_rgb(&q.image.data, e.info().height, e.info().width))))
}

async fn new_query(
    State(s): State<AppState>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let e = s.engine()?;
    let (data, source) = match params.get("scene") {
        Some(seed) => {
            let seed = parse_seed(seed)?;
            let e = e.clone();
            (blocking(move || e.scene_query(seed)).await?, format!("scene {seed}"))
        }
        None => {
            content_type(&headers, &["image/png", "image/jpeg", "application/octet-stream"], "the image")?;
            let bytes = read_body(body, "the image").await?;
            let e = e.clone();
            (blocking(move || e.upload_query(decode_image(&bytes)?)).await?, "upload".to_string())
        }
    };
    let q = s.queries.add(data, source);
    Ok((StatusCode::CREATED, Json(q.to_json(&e))).into_response())
}

async fn get_query(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let e = s.engine()?;
    Ok(Json(s.query(&id)?.to_json(&e)))
}

async fn put_mask(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let e = s.engine()?;
    let q = s.query(&id)?;
    content_type(&headers, &["image/png", "application/octet-stream"], "the mask")?;
    let bytes = read_body(body, "the mask").await?;
    let native = q.native_size;
    let e2 = e.clone();
    let labels = blocking(move || e2.fit_mask(decode_mask(&bytes)?, native)).await?;
    q.set_labels(labels, "mask");
    Ok(Json(q.to_json(&e)))
}

async fn query_file(State(s): State<AppState>, Path((id, file)): Path<(String, String)>) -> ApiResult<Response> {
    let e = s.engine()?;
    let q = s.query(&id)?;
    let (h, w) = (e.info().height, e.info().width);
    let no_labels = || ApiError::NotFound(format!("query {id}: no label map yet (upload a mask)"));
    let bytes = match file.as_str() {
        "image.png" => crate::render::png(&crate::render::to_rgb(&q.image.data, h, w)),
        "labels.png" => {
            let l = q.labels().ok_or_else(no_labels)?;
            crate::io::gray_png(&l.labels, l.height, l.width)
        }
        "overlay.png" => e.overlay_png(&q.labels().ok_or_else(no_labels)?),
        other => {
            return Err(ApiError::NotFound(format!(
                "`{}`: a query has image.png, labels.png and overlay.png",
                other.escape_default()
            )));
        }
    };
    Ok(png_response(bytes))
}

/// `POST /api/jobs`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequest {
    query: String,
    #[serde(default)]
    regions: Option<Vec<Value>>,
    #[serde(default)]
    attribute: Option<Value>,
    #[serde(default)]
    target: Option<u8>,
    #[serde(default)]
    steps: Option<usize>,
    #[serde(default)]
    lr: Option<f64>,
    #[serde(default)]
    lambda_prox: Option<f64>,
    #[serde(default)]
    early_stop: Option<usize>,
    #[serde(default)]
    frame_every: Option<usize>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn new_job(State(s): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let e = s.engine()?;
    content_type(&headers, &["application/json"], "the job request")?;
    let bytes = read_body(body, "the job request").await?;
    let r: JobRequest = serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::BadRequest(format!("the job request: not the JSON expected: {err}")))?;
    let q = s.query(&r.query)?;
    if q.labels().is_none() {
        return Err(ApiError::Conflict(format!("query {}: no label map: upload a mask first", q.id)));
    }
    let regions: Option<Vec<String>> = r.regions.as_ref().map(|v| v.iter().map(text).collect());
    let settings = e.job_settings(
        r.attribute.as_ref().map(text).as_deref(),
        r.target,
        regions.as_deref(),
        r.steps,
        r.lr,
        r.lambda_prox,
        r.early_stop,
        r.frame_every,
    )?;
    let (job, position) = s.jobs.submit(q, settings).ok_or_else(|| {
        ApiError::Busy(format!("{} jobs are waiting already: try again later", super::jobs::MAX_WAITING))
    })?;
    let _ = s.wake.send(());
    let body = json!({
        "job": job.id,
        "status": "queued",
        "position": position,
        "events": format!("/api/jobs/{}/events", job.id),
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

fn job_or_404(jobs: &Jobs, id: &str) -> ApiResult<Arc<super::jobs::Job>> {
    jobs.get(id).ok_or_else(|| ApiError::NotFound(format!("job `{}`: unknown", id.escape_default())))
}

async fn get_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let job = job_or_404(&s.jobs, &id)?;
    let position = s.jobs.position(&id);
    let (status, points, error, outcome) = {
        let st = job.state();
        (st.status, st.points.clone(), st.error.clone(), st.outcome.clone())
    };
    Ok(Json(json!({
        "job": job.id,
        "query": job.query.id,
        "status": status,
        "position": position,
        "steps": job.settings.settings.steps,
        "step": points.last().map(|p| p.step),
        "points": points,
        "error": error,
        "result": outcome.map(|o| result_json(&job, &o)),
    })))
}

async fn cancel_job(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let job = job_or_404(&s.jobs, &id)?;
    let status = s.jobs.cancel(&id).unwrap_or(Status::Cancelled);
    Ok(Json(json!({ "job": job.id, "status": status, "cancel_requested": true })))
}

async fn job_events(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let job = job_or_404(&s.jobs, &id)?;
    let rx = job.subscribe();
    let stream = futures_util::stream::unfold((job, rx, 0usize), |(job, mut rx, i)| async move {
        loop {
            let next = {
                let st = job.state();
                match st.events.get(i) {
                    Some((name, data)) => Some(Some((*name, data.clone()))),
                    None if st.status.is_final() => None,
                    None => Some(None),
                }
            };
            match next {
                Some(Some((name, data))) => {
                    return Some((Ok(Event::default().event(name).data(data)), (job, rx, i + 1)));
                }
                None => return None,
                Some(None) => {
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    });
    Ok(Sse::new(stream))
}

async fn job_image(State(s): State<AppState>, Path((id, file)): Path<(String, String)>) -> ApiResult<Response> {
    let job = job_or_404(&s.jobs, &id)?;
    let name = file.strip_suffix(".png").unwrap_or("");
    let k = IMAGE_NAMES.iter().position(|n| *n == name).ok_or_else(|| {
        ApiError::NotFound(format!("`{}`: the images are {}.png", file.escape_default(), IMAGE_NAMES.join(".png, ")))
    })?;
    let outcome = job.state().outcome.clone().ok_or_else(|| ApiError::NotFound(format!("job {id}: no result yet")))?;
    Ok(png_response(outcome.images[k].clone()))
}

async fn job_frame(State(s): State<AppState>, Path((id, file)): Path<(String, String)>) -> ApiResult<Response> {
    let job = job_or_404(&s.jobs, &id)?;
    let k: usize = file
        .strip_suffix(".png")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::NotFound(format!("`{}`: frames are N.png", file.escape_default())))?;
    let png = job.state().frames.get(k).map(|(_, p)| p.clone());
    Ok(png_response(png.ok_or_else(|| ApiError::NotFound(format!("job {id}: no frame {k}")))?))
}

async fn results_list(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let dir = s.results()?;
    Ok(Json(blocking(move || dir.list()).await?))
}

async fn results_file(State(s): State<AppState>, Path((image, file)): Path<(String, String)>) -> ApiResult<Response> {
    let dir = s.results()?;
    Ok(png_response(blocking(move || dir.file(&image, &file)).await?))
}

#[cfg(test)]
mod tests {
    use super::host_is_loopback;

    #[test]
    fn only_loopback_host_names_pass() {
        for ok in ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:80", "127.8.9.1:1", "[::1]:8080", "[::1]"] {
            assert!(host_is_loopback(ok), "{ok}");
        }
        for bad in
            ["", "evil.example", "evil.example:8080", "10.0.0.1:80", "localhost.evil.example", "[::2]:1", "0.0.0.0"]
        {
            assert!(!host_is_loopback(bad), "{bad}");
        }
    }
}
