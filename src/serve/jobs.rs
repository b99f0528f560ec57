//! Explanation jobs: one runs at a time, the others wait in a queue (first come, first
//! served; each waiting job knows its position). A job keeps a log of events (`queued`,
//! `started`, `step`, then one of `done`, `failed`, `cancelled`) that the server-sent event
//! stream replays and follows, the scores per step, the frames, and at the end the result
//! and its four images.

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::engine::Engine;
use super::explain::{IMAGE_NAMES, JobSettings, Outcome, StepUpdate};
use super::queries::Query;

/// The most jobs waiting at once; more are refused (429).
pub const MAX_WAITING: usize = 8;
/// Finished jobs kept (their results and images); older ones are forgotten.
pub const KEEP_FINISHED: usize = 16;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for the ones before it.
    Queued,
    /// Being optimised.
    Running,
    /// Finished: the result is there.
    Done,
    /// Stopped by a cancel: a result of the steps run is there if it had started.
    Cancelled,
    /// The explainer failed.
    Failed,
}

impl Status {
    /// Nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Done | Status::Cancelled | Status::Failed)
    }
}

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct StepPoint {
    /// 1-based forward number.
    pub step: usize,
    /// Probability of the explained output on this step's image.
    pub score: f32,
    /// Decision loss.
    pub loss_decision: f32,
    /// Proximity loss (with its lambda).
    pub loss_proximity: f32,
}

/// A job's state behind its lock.
pub struct JobState {
    /// Where it is.
    pub status: Status,
    /// Events so far, `(name, data)`, replayed to every stream.
    pub events: Vec<(&'static str, String)>,
    /// One point per step.
    pub points: Vec<StepPoint>,
    /// `(step, PNG)`: the codes reached after that step.
    pub frames: Vec<(usize, Vec<u8>)>,
    /// The outcome, once there.
    pub outcome: Option<Arc<Outcome>>,
    /// The failure, if any.
    pub error: Option<String>,
}

/// One explanation asked for.
pub struct Job {
    /// Its id (`j1`, `j2`, ...).
    pub id: String,
    /// The query explained.
    pub query: Arc<Query>,
    /// Its settings.
    pub settings: JobSettings,
    cancel: AtomicBool,
    state: Mutex<JobState>,
    changed: watch::Sender<usize>,
}

impl Job {
    /// Its state (the lock is never held across a step).
    pub fn state(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver told the number of events whenever one is added.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.changed.subscribe()
    }

    fn push(&self, name: &'static str, data: Value) {
        self.push_with(name, data, None);
    }

    /// Adds an event (and sets the status, under the same lock, so that a stream that sees
    /// a final status has seen the final event too) and wakes the streams.
    fn push_with(&self, name: &'static str, data: Value, status: Option<Status>) {
        let n = {
            let mut s = self.state();
            s.events.push((name, data.to_string()));
            if let Some(st) = status {
                s.status = st;
            }
            s.events.len()
        };
        self.changed.send_replace(n);
    }

    fn finish(&self, status: Status, event: &'static str, data: Value) {
        self.push_with(event, data, Some(status));
    }

    /// Asks it to stop: a queued job is cancelled at once, a running one after its step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// The jobs of a server.
#[derive(Default)]
pub struct Jobs {
    inner: Mutex<JobsInner>,
}

#[derive(Default)]
struct JobsInner {
    next: u64,
    all: BTreeMap<u64, Arc<Job>>,
    waiting: VecDeque<u64>,
    running: Option<u64>,
}

fn number(id: &str) -> Option<u64> {
    id.strip_prefix('j')?.parse().ok()
}

impl Jobs {
    fn inner(&self) -> MutexGuard<'_, JobsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a job; returns it and its position (0: it runs next or now), or `None` when
    /// [`MAX_WAITING`] jobs already wait.
    pub fn submit(&self, query: Arc<Query>, settings: JobSettings) -> Option<(Arc<Job>, usize)> {
        let mut inner = self.inner();
        if inner.waiting.len() >= MAX_WAITING {
            return None;
        }
        inner.next += 1;
        let n = inner.next;
        let job = Arc::new(Job {
            id: format!("j{n}"),
            query,
            settings,
            cancel: AtomicBool::new(false),
            state: Mutex::new(JobState {
                status: Status::Queued,
                events: Vec::new(),
                points: Vec::new(),
                frames: Vec::new(),
                outcome: None,
                error: None,
            }),
            changed: watch::channel(0).0,
        });
        inner.waiting.push_back(n);
        let position = inner.waiting.len() - 1 + usize::from(inner.running.is_some());
        inner.all.insert(n, job.clone());
        // Forget the oldest finished jobs.
        let finished: Vec<u64> =
            inner.all.iter().filter(|(_, j)| j.state().status.is_final()).map(|(&k, _)| k).collect();
        for k in finished.iter().take(finished.len().saturating_sub(KEEP_FINISHED)) {
            inner.all.remove(k);
        }
        // Its first event before the worker can see it (so `queued` always comes first).
        job.push("queued", json!({ "job": job.id, "position": position }));
        drop(inner);
        Some((job, position))
    }

    /// The job of `id`, if known.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        let n = number(id)?;
        self.inner().all.get(&n).cloned()
    }

    /// Jobs ahead of `id` (the running one included); `None` once it has started.
    pub fn position(&self, id: &str) -> Option<usize> {
        let n = number(id)?;
        let inner = self.inner();
        let i = inner.waiting.iter().position(|&k| k == n)?;
        Some(i + usize::from(inner.running.is_some()))
    }

    /// Cancels job `id`: a queued one leaves the queue now; returns its status after.
    pub fn cancel(&self, id: &str) -> Option<Status> {
        let n = number(id)?;
        let job = self.get(id)?;
        job.cancel();
        let mut inner = self.inner();
        if let Some(i) = inner.waiting.iter().position(|&k| k == n) {
            inner.waiting.remove(i);
            drop(inner);
            job.finish(Status::Cancelled, "cancelled", json!({ "job": job.id, "steps_run": 0 }));
            self.announce_positions();
        }
        let status = job.state().status;
        Some(status)
    }

    /// Takes the next job to run, marking it running.
    fn take_next(&self) -> Option<Arc<Job>> {
        let mut inner = self.inner();
        let n = inner.waiting.pop_front()?;
        inner.running = Some(n);
        inner.all.get(&n).cloned()
    }

    fn done_running(&self) {
        self.inner().running = None;
    }

    /// Tells every waiting job its position.
    fn announce_positions(&self) {
        let waiting: Vec<(Arc<Job>, usize)> = {
            let inner = self.inner();
            let busy = usize::from(inner.running.is_some());
            inner.waiting.iter().enumerate().filter_map(|(i, k)| Some((inner.all.get(k)?.clone(), i + busy))).collect()
        };
        for (job, position) in waiting {
            job.push("queued", json!({ "job": job.id, "position": position }));
        }
    }
}

/// Runs the queued jobs one after another, each on a blocking thread, until `wake` closes.
pub async fn worker(jobs: Arc<Jobs>, engine: Arc<Engine>, mut wake: tokio::sync::mpsc::UnboundedReceiver<()>) {
    loop {
        while let Some(job) = jobs.take_next() {
            jobs.announce_positions();
            let (engine, run) = (engine.clone(), job.clone());
            let outcome = tokio::task::spawn_blocking(move || run_job(&engine, &run)).await;
            if let Err(e) = outcome {
                job.state().error = Some(format!("the explanation panicked: {e}"));
                job.finish(Status::Failed, "failed", json!({ "job": job.id, "error": "the explanation panicked" }));
            }
            jobs.done_running();
            jobs.announce_positions();
        }
        if wake.recv().await.is_none() {
            return;
        }
    }
}

/// One job, on a blocking thread: its events as it goes, then its outcome.
fn run_job(engine: &Engine, job: &Job) {
    let steps = job.settings.settings.steps;
    if job.cancelled() {
        job.finish(Status::Cancelled, "cancelled", json!({ "job": job.id, "steps_run": 0 }));
        return;
    }
    job.state().status = Status::Running;
    job.push("started", json!({ "job": job.id, "steps": steps }));
    let Some(labels) = job.query.labels() else {
        job.state().error = Some("the query has no label map".into());
        job.finish(Status::Failed, "failed", json!({ "job": job.id, "error": "the query has no label map" }));
        return;
    };
    let mut control = |u: StepUpdate| {
        let r = u.report;
        let point = StepPoint {
            step: r.step,
            score: r.score[0],
            loss_decision: r.loss_decision[0],
            loss_proximity: r.loss_proximity[0],
        };
        let frame = u.frame.map(|png| {
            let mut s = job.state();
            s.frames.push((r.step, png));
            s.frames.len() - 1
        });
        let mut data = serde_json::to_value(&point).unwrap_or(Value::Null);
        data["steps"] = json!(r.steps);
        if let Some(k) = frame {
            data["frame"] = json!(format!("/api/jobs/{}/frames/{k}.png", job.id));
        }
        job.state().points.push(point);
        job.push("step", data);
        if job.cancelled() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    };
    match engine.explain(&job.query.image, &labels, &job.settings, &mut control) {
        Ok(outcome) => {
            let cancelled = job.cancelled();
            let summary = result_json(job, &outcome);
            job.state().outcome = Some(Arc::new(outcome));
            if cancelled {
                job.finish(Status::Cancelled, "cancelled", summary);
            } else {
                job.finish(Status::Done, "done", summary);
            }
        }
        Err(e) => {
            job.state().error = Some(e.to_string());
            job.finish(Status::Failed, "failed", json!({ "job": job.id, "error": e.to_string() }));
        }
    }
}

/// The result as the API gives it: the record, the images' and frames' addresses.
pub fn result_json(job: &Job, outcome: &Outcome) -> Value {
    let images: serde_json::Map<String, Value> =
        IMAGE_NAMES.iter().map(|n| (n.to_string(), json!(format!("/api/jobs/{}/images/{n}.png", job.id)))).collect();
    let frames: Vec<Value> = job
        .state()
        .frames
        .iter()
        .enumerate()
        .map(|(k, (step, _))| json!({ "step": step, "url": format!("/api/jobs/{}/frames/{k}.png", job.id) }))
        .collect();
    let e = &outcome.result.explanation;
    let a = outcome.result.attribute.id;
    json!({
        "job": job.id,
        "success": e.success,
        "steps_run": e.steps_run,
        "initial_probability": e.initial_probabilities.get(a),
        "final_probability": e.final_probabilities.get(a),
        "images": images,
        "frames": frames,
        "result": outcome.result,
    })
}
