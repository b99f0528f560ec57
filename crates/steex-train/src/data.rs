//! The samples of an image folder and a label file, checked before training, and the
//! [`Loader`]: worker threads read, decode and resize the images of the coming batches
//! while the step runs, a bounded number of batches ahead, in an order shuffled by the
//! seed and the epoch (so any epoch, and any batch of it, is the same on every run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::TrainError;
use crate::labels::LabelTable;

/// One training image and its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// One value in {0, 1} per chosen attribute (none for a segmenter's sample).
    pub targets: Vec<f32>,
    /// The label map (a segmenter's sample), matched to the image by file stem.
    pub mask: Option<PathBuf>,
}

/// The samples of `table` found in `dir`, the chosen `columns` as targets; see
/// [`split_samples`].
pub fn samples(dir: &Path, table: &LabelTable, columns: &[usize]) -> Result<Vec<Sample>, TrainError> {
    Ok(split_samples(&[dir], table, columns)?.remove(0))
}

/// The samples of `table` in each folder of `dirs` (a label file shared by a training and a
/// validation folder, as CelebA's is): every image the label file names must be in one of
/// them and have a readable header (else an error naming the first missing or unreadable
/// one); an empty folder, or one with no labelled image, is an error.
pub fn split_samples(dirs: &[&Path], table: &LabelTable, columns: &[usize]) -> Result<Vec<Vec<Sample>>, TrainError> {
    for dir in dirs {
        let mut listing = std::fs::read_dir(dir).map_err(steex_io::error::io_err(dir))?;
        if listing.next().is_none() {
            return Err(TrainError::Empty(format!("the image folder {} is empty", dir.display())));
        }
    }
    let mut missing = Vec::new();
    let mut out = vec![Vec::new(); dirs.len()];
    for (file, values) in &table.rows {
        let Some(d) = dirs.iter().position(|d| d.join(file).is_file()) else {
            missing.push(file.clone());
            continue;
        };
        let targets = columns.iter().map(|&c| values[c]).collect();
        out[d].push(Sample { path: dirs[d].join(file), targets, mask: None });
    }
    if let Some(first) = missing.first() {
        let dir = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" or ");
        return Err(TrainError::MissingImages {
            labels: table.path.clone(),
            dir: dir.into(),
            first: first.clone(),
            count: missing.len(),
        });
    }
    for (dir, s) in dirs.iter().zip(&out) {
        if s.is_empty() {
            return Err(TrainError::Empty(format!("no image of {} is in {}", table.path.display(), dir.display())));
        }
    }
    for s in out.iter().flatten() {
        steex_io::image_size(&s.path).map_err(|e| TrainError::Image { path: s.path.clone(), reason: e.to_string() })?;
    }
    Ok(out)
}

/// The images of `images` (PNG/JPEG, sorted by name) with their label maps
/// `masks/<stem>.png`, checked before training: every image needs its mask, of the image's
/// size, with ids below `classes` (or 255, ignored); an empty folder is an error.
pub fn segmentation_samples(images: &Path, masks: &Path, classes: usize) -> Result<Vec<Sample>, TrainError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(images).map_err(steex_io::error::io_err(images))? {
        let path = e.map_err(steex_io::error::io_err(images))?.path();
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if path.is_file() && !hidden && ["png", "jpg", "jpeg"].contains(&ext.as_str()) {
            out.push(path);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(TrainError::Empty(format!("the image folder {} holds no PNG/JPEG images", images.display())));
    }
    out.into_iter()
        .map(|path| {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let mask = masks.join(format!("{stem}.png"));
            let bad = |reason: String| TrainError::Image { path: mask.clone(), reason };
            if !mask.is_file() {
                return Err(bad(format!("missing: the mask of {}", path.display())));
            }
            let size = steex_io::image_size(&path)
                .map_err(|e| TrainError::Image { path: path.clone(), reason: e.to_string() })?;
            let m = steex_io::LabelMap::read(&mask).map_err(|e| bad(e.to_string()))?;
            if (m.height, m.width) != size {
                return Err(bad(format!(
                    "{}x{} pixels, its image {} is {}x{}",
                    m.width,
                    m.height,
                    path.display(),
                    size.1,
                    size.0
                )));
            }
            m.check(classes, &mask).map_err(|e| bad(e.to_string()))?;
            Ok(Sample { path, targets: Vec::new(), mask: Some(mask) })
        })
        .collect()
}

/// The order of the samples in epoch `epoch` (0-based): a shuffle seeded by `seed` and the
/// epoch.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    order.shuffle(&mut rng);
    order
}

/// Whether sample `index` is flipped in epoch `epoch` (a hash of seed, epoch and index, so
/// independent of which thread reads it).
pub fn flipped(seed: u64, epoch: usize, index: usize) -> bool {
    let mut x = seed ^ ((epoch as u64) << 40) ^ (index as u64).wrapping_mul(0xd1b5_4a32_d192_ed03);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x & 1 == 1
}

/// A batch ready for the step: images `[B, 3, H, W]` in [-1, 1] and targets `[B, K]` (a
/// segmenter's: label ids `[B, H, W]`), on the host, with the images that could not be read
/// (skipped).
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// Index of the batch in its epoch.
    pub index: usize,
    /// Images, `B * 3 * H * W` values.
    pub images: Vec<f32>,
    /// Targets, `B * K` values.
    pub targets: Vec<f32>,
    /// `B`.
    pub len: usize,
    /// Images left out because they could not be read, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// How the loader reads an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch (the last batch of an epoch may be smaller).
    pub batch: usize,
    /// `(height, width)` the images are resized to.
    pub size: (usize, usize),
    /// Random horizontal flips (half the images).
    pub flip: bool,
    /// Shuffle and flip seed.
    pub seed: u64,
    /// Worker threads.
    pub workers: usize,
    /// Batches read ahead of the step at most (besides those being read).
    pub ahead: usize,
}

/// The batches of one epoch, read by worker threads ahead of the step; dropping it stops the
/// workers.
pub struct Loader {
    rx: Receiver<HostBatch>,
    pending: BTreeMap<usize, HostBatch>,
    next: usize,
    count: usize,
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Loader {
    /// Starts reading epoch `epoch` of `samples` from batch `first` on (later batches of a
    /// resumed epoch).
    pub fn start(samples: Arc<Vec<Sample>>, cfg: LoaderConfig, epoch: usize, first: usize) -> Self {
        let order = Arc::new(epoch_order(samples.len(), cfg.seed, epoch));
        let batch = cfg.batch.max(1);
        let count = samples.len().div_ceil(batch);
        let (tx, rx) = sync_channel(cfg.ahead.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let next_job = Arc::new(AtomicUsize::new(first));
        let workers = (0..cfg.workers.max(1))
            .map(|_| {
                let (tx, stop, next_job, order, samples) =
                    (tx.clone(), stop.clone(), next_job.clone(), order.clone(), samples.clone());
                std::thread::spawn(move || {
                    loop {
                        let b = next_job.fetch_add(1, Ordering::SeqCst);
                        if b >= count || stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let idx = &order[b * batch..((b + 1) * batch).min(order.len())];
                        if tx.send(read_batch(&samples, idx, b, &cfg, epoch)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Loader { rx, pending: BTreeMap::new(), next: first, count, stop, workers }
    }

    /// Batches in the epoch.
    pub fn batches(&self) -> usize {
        self.count
    }
}

impl Iterator for Loader {
    type Item = HostBatch;

    /// The next batch in order (`None` at the end of the epoch).
    fn next(&mut self) -> Option<HostBatch> {
        if self.next >= self.count {
            return None;
        }
        while !self.pending.contains_key(&self.next) {
            let b = self.rx.recv().ok()?;
            self.pending.insert(b.index, b);
        }
        let b = self.pending.remove(&self.next);
        self.next += 1;
        b
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock workers waiting to send, then wait for them.
        while self.rx.try_recv().is_ok() {}
        for w in self.workers.drain(..) {
            while !w.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = w.join();
        }
    }
}

/// Reads the samples `idx` (batch `index` of epoch `epoch`).
fn read_batch(samples: &[Sample], idx: &[usize], index: usize, cfg: &LoaderConfig, epoch: usize) -> HostBatch {
    let (h, w) = cfg.size;
    let mut out = HostBatch { index, images: Vec::new(), targets: Vec::new(), len: 0, skipped: Vec::new() };
    for &i in idx {
        let s = &samples[i];
        let read = steex_io::read_image(&s.path, (h, w)).and_then(|a| {
            let labels = match &s.mask {
                Some(m) => steex_io::LabelMap::read(m)?.resized(h, w).labels.iter().map(|&v| v as f32).collect(),
                None => s.targets.clone(),
            };
            Ok((a, labels))
        });
        match read {
            Ok((mut a, mut labels)) => {
                if cfg.flip && flipped(cfg.seed, epoch, i) {
                    for row in a.data.chunks_mut(w) {
                        row.reverse();
                    }
                    if s.mask.is_some() {
                        for row in labels.chunks_mut(w) {
                            row.reverse();
                        }
                    }
                }
                out.images.extend_from_slice(&a.data);
                out.targets.extend_from_slice(&labels);
                out.len += 1;
            }
            Err(e) => out.skipped.push((s.path.clone(), e.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, v: u8) {
        let img = image::RgbImage::from_fn(6, 4, |x, _| image::Rgb([v, (x * 40) as u8, 0]));
        img.save(path).unwrap();
    }

    #[test]
    fn loader_yields_every_sample_once_in_seeded_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = Vec::new();
        for i in 0..7u8 {
            write_png(&dir.path().join(format!("{i}.png")), i * 30);
            rows.push((format!("{i}.png"), vec![i as f32]));
        }
        std::fs::write(dir.path().join("bad.png"), b"not a png").unwrap();
        let table =
            LabelTable { path: "l.csv".into(), format: crate::labels::LabelFormat::Csv, names: vec!["a".into()], rows };
        let s = Arc::new(samples(dir.path(), &table, &[0]).unwrap());
        let cfg = LoaderConfig { batch: 3, size: (4, 6), flip: true, seed: 9, workers: 3, ahead: 1 };
        let run = |first| Loader::start(s.clone(), cfg, 1, first).collect::<Vec<_>>();
        let all = run(0);
        assert_eq!(all.iter().map(|b| b.len).collect::<Vec<_>>(), vec![3, 3, 1]);
        let mut seen: Vec<f32> = all.iter().flat_map(|b| b.targets.clone()).collect();
        let order: Vec<f32> = epoch_order(7, 9, 1).iter().map(|&i| i as f32).collect();
        assert_eq!(seen, order);
        seen.sort_by(f32::total_cmp);
        assert_eq!(seen, (0..7).map(|i| i as f32).collect::<Vec<_>>());
        assert_ne!(epoch_order(7, 9, 1), epoch_order(7, 9, 2));
        // A resumed epoch reads the same later batches.
        let later = run(1);
        assert_eq!(later[0].images, all[1].images);
        // Flips: some images are mirrored (red channel constant per image, green ramps).
        let flips = (0..7).filter(|&i| flipped(9, 1, i)).count();
        assert!(flips > 0 && flips < 7);
        // An image the label file names but the folder lacks, an undecodable one, an empty folder.
        let mut t2 = table.clone();
        t2.rows.push(("gone.png".into(), vec![0.0]));
        assert!(matches!(samples(dir.path(), &t2, &[0]), Err(TrainError::MissingImages { .. })));
        t2.rows.pop();
        t2.rows.push(("bad.png".into(), vec![0.0]));
        let e = samples(dir.path(), &t2, &[0]).unwrap_err().to_string();
        assert!(e.contains("bad.png"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(samples(empty.path(), &table, &[0]), Err(TrainError::Empty(_))));
    }
}
