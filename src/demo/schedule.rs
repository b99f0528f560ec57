//! The demo's batches and the threads that explain them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use burn::tensor::{Device, Tensor};
use steex_explain::{ExplainSettings, Explanation, explain};
use steex_sean::{SeanGenerator, SemanticMask};
use steex_synth::batch_of;
use steex_synth::scene::{Scene, scene};

use super::models::{DemoModels, bundled_error};
use crate::error::Result;

/// A batch of held-out scenes, ready for the explainer (built once, shared by its jobs).
pub(super) struct Chunk<'a> {
    pub seeds: &'a [u64],
    pub scenes: Vec<Scene>,
    /// Images `[B, 3, H, W]` in [-1, 1].
    pub images: Tensor<4>,
    /// The true label maps, as the generator's mask.
    pub mask: SemanticMask,
}

impl<'a> Chunk<'a> {
    pub fn new(seeds: &'a [u64], generator: &SeanGenerator, device: &Device) -> Result<Self> {
        let scenes: Vec<Scene> = seeds.iter().map(|&s| scene(s)).collect();
        let batch = batch_of(&scenes, device);
        let (images, mask) = (batch.images, generator.mask(batch.labels)?);
        Ok(Chunk { seeds, scenes, images, mask })
    }
}

/// Explains every chunk in every mode, on `workers` threads that take the (chunk, mode)
/// jobs in turn, the all-but-the-lamp ones (never stopped early, so the longest) first.
/// Each job's result depends on its chunk and mode only, so the figures do not depend on
/// `workers`. `progress` (called on this thread) is told the explanations finished so far,
/// and their total, after every optimisation step of any job. Returns, per chunk, its
/// explanations in the order of `modes`.
pub(super) fn explain_all(
    models: &DemoModels,
    chunks: &[Chunk],
    modes: &[ExplainSettings],
    workers: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<Explanation>>> {
    let jobs: Vec<(usize, usize)> =
        (0..modes.len()).rev().flat_map(|m| (0..chunks.len()).map(move |k| (k, m))).collect();
    let total: usize = chunks.iter().map(|c| c.scenes.len()).sum::<usize>() * modes.len();
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<usize>();
    let finished: Vec<(usize, Result<Explanation>)> = std::thread::scope(|scope| {
        let (jobs, next, failed) = (&jobs, &next, &failed);
        let handles: Vec<_> = (0..workers.min(jobs.len()))
            .map(|_| {
                let tx = tx.clone();
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(k, m)) = jobs.get(j) else { break };
                        let c = &chunks[k];
                        let mut stopped = 0;
                        let r = explain(
                            &models.generator,
                            &models.classifier,
                            c.images.clone(),
                            &c.mask,
                            &modes[m],
                            &mut |r| {
                                let now = r.active.iter().filter(|a| !**a).count();
                                let _ = tx.send(now - stopped);
                                stopped = now;
                            },
                        )
                        .map_err(|e| bundled_error("models", e.to_string()));
                        // Images still active after the last step are finished too.
                        let _ = tx.send(c.scenes.len() - stopped);
                        failed.fetch_or(r.is_err(), Ordering::Relaxed);
                        mine.push((j, r));
                    }
                    mine
                })
            })
            .collect();
        drop(tx);
        let mut done = 0;
        for n in rx {
            done += n;
            progress(done.min(total), total);
        }
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut per_chunk: Vec<Vec<Option<Explanation>>> =
        chunks.iter().map(|_| modes.iter().map(|_| None).collect()).collect();
    for (j, r) in finished {
        let (k, m) = jobs[j];
        per_chunk[k][m] = Some(r?);
    }
    per_chunk
        .into_iter()
        .map(|c| c.into_iter().collect::<Option<Vec<_>>>())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bundled_error("models", "an explanation job did not run".into()))
}
