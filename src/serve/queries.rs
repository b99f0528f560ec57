//! Queries: the images the server was given (an upload or a demo scene), at the
//! generator's size, with their label maps and scores. Kept in memory, the latest
//! [`KEEP_QUERIES`] only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use steex_io::{Array, LabelMap};

use super::engine::{Engine, QueryData};

/// Queries kept; older ones are forgotten.
pub const KEEP_QUERIES: usize = 32;

/// One image to explain.
pub struct Query {
    /// Its id (`q1`, `q2`, ...).
    pub id: String,
    /// Where it came from: `upload` or `scene <seed>`.
    pub source: String,
    /// `[1, 3, H, W]` in [-1, 1] at the generator's size.
    pub image: Array,
    /// The uploaded image's own size (a mask must have its aspect ratio).
    pub native_size: (usize, usize),
    /// Decision logits.
    pub logits: Vec<f32>,
    /// Probabilities.
    pub probabilities: Vec<f32>,
    labels: Mutex<Option<(LabelMap, &'static str)>>,
}

impl Query {
    /// The label map at the generator's size, if known.
    pub fn labels(&self) -> Option<LabelMap> {
        self.labels.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(l, _)| l.clone())
    }

    /// Replaces the label map (an uploaded mask).
    pub fn set_labels(&self, labels: LabelMap, source: &'static str) {
        *self.labels.lock().unwrap_or_else(|p| p.into_inner()) = Some((labels, source));
    }

    /// The query as the API gives it.
    pub fn to_json(&self, engine: &Engine) -> Value {
        let guard = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        let names = engine.region_names();
        let present: Vec<Value> = guard
            .as_ref()
            .map(|(l, _)| {
                let mut count = vec![0usize; names.len()];
                for &v in &l.labels {
                    if let Some(c) = count.get_mut(v as usize) {
                        *c += 1;
                    }
                }
                count
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(id, &pixels)| json!({ "id": id, "name": names[id], "pixels": pixels }))
                    .collect()
            })
            .unwrap_or_default();
        let base = format!("/api/queries/{}", self.id);
        json!({
            "id": self.id,
            "source": self.source,
            "width": self.native_size.1,
            "height": self.native_size.0,
            "attributes": engine.info().attributes,
            "probabilities": self.probabilities,
            "logits": self.logits,
            "labels_source": guard.as_ref().map(|(_, s)| *s),
            "regions_present": present,
            "image": format!("{base}/image.png"),
            "labels": guard.as_ref().map(|_| format!("{base}/labels.png")),
            "overlay": guard.as_ref().map(|_| format!("{base}/overlay.png")),
        })
    }
}

/// The queries of a server.
#[derive(Default)]
pub struct Queries {
    inner: Mutex<(u64, BTreeMap<u64, Arc<Query>>)>,
}

impl Queries {
    /// Keeps a new query and returns it.
    pub fn add(&self, data: QueryData, source: String) -> Arc<Query> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0 += 1;
        let n = inner.0;
        let q = Arc::new(Query {
            id: format!("q{n}"),
            source,
            image: data.image,
            native_size: data.native_size,
            logits: data.logits,
            probabilities: data.probabilities,
            labels: Mutex::new(data.labels.zip(data.labels_source)),
        });
        inner.1.insert(n, q.clone());
        while inner.1.len() > KEEP_QUERIES {
            inner.1.pop_first();
        }
        q
    }

    /// The query of `id`, if kept.
    pub fn get(&self, id: &str) -> Option<Arc<Query>> {
        let n: u64 = id.strip_prefix('q')?.parse().ok()?;
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).1.get(&n).cloned()
    }
}
