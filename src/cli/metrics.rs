//! `steex metrics`: success rate, proximity, FID, FVA and MNAC of a set of counterfactuals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use steex::Error;
use steex::dataset::list_images;
use steex::error::bad;
use steex::inception::FidInception;
use steex::io::{image_size, read_image, read_image_native, read_json, read_npy, read_weights};
use steex::metrics::models::{FaceEmbedder, INPUT_SIZE, Oracle, face_input};
use steex::metrics::{ProximityTally, SuccessTally, Summary, code_change, fid_from_features, fva, mnac, proximity};
use steex::results::{RESULT_FILE, ResultJson};

/// Arguments of `steex metrics`.
#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    /// Folder of the real (query) images; counterfactuals are paired with them by file stem,
    /// and all of them are the real set of the FID.
    #[arg(long)]
    pub real: PathBuf,
    /// The counterfactuals: a flat folder of images, or an `explain-dir` output (one folder
    /// per image with `counterfactual.png` and `result.json`).
    #[arg(long)]
    pub counterfactuals: PathBuf,
    /// pytorch-fid's Inception-v3 (`weights-convert inception`): enables FID.
    #[arg(long)]
    pub inception: Option<PathBuf>,
    /// A VGGFace2 face ResNet (`weights-convert face`): enables FVA.
    #[arg(long)]
    pub face_model: Option<PathBuf>,
    /// The attribute oracle (`weights-convert oracle`): enables MNAC.
    #[arg(long)]
    pub oracle: Option<PathBuf>,
    /// Oracle output of the explained attribute, left out of MNAC (default: from each
    /// `result.json`'s attribute name in CelebA's order: male 20, smile 31, young 39).
    #[arg(long)]
    pub oracle_target: Option<usize>,
    /// Images per model forward.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// CelebA's index of a decision attribute name, as the 40-output oracle orders them.
fn celeba_index(name: &str) -> Option<usize> {
    match name.to_ascii_lowercase().as_str() {
        "male" => Some(20),
        "smile" | "smiling" => Some(31),
        "young" => Some(39),
        _ => None,
    }
}

/// One (query, counterfactual) pair.
struct Pair {
    stem: String,
    real: PathBuf,
    cf: PathBuf,
    /// `result.json` of an explain-dir result folder.
    result: Option<ResultJson>,
    /// The result folder (for `z_initial.npy` / `z_final.npy`).
    dir: Option<PathBuf>,
}

/// Pairs every counterfactual with its real image.
fn pairs(args: &MetricsArgs) -> Result<Vec<Pair>, Error> {
    for (flag, d) in [("--real", &args.real), ("--counterfactuals", &args.counterfactuals)] {
        if !d.is_dir() {
            return Err(bad(format!("{flag} {}: not a folder", d.display())));
        }
    }
    let real: BTreeMap<String, PathBuf> = list_images(&args.real)?.into_iter().map(|e| (e.stem, e.path)).collect();
    let find_real = |stem: &str| {
        real.get(stem).cloned().ok_or_else(|| {
            bad(format!(
                "no real image for `{stem}`: expected {}/{stem}.png (or .jpg, .jpeg, .npy)",
                args.real.display()
            ))
        })
    };
    // explain-dir layout: sub-folders holding counterfactual.png.
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(&args.counterfactuals)
        .map_err(|source| Error::io(&args.counterfactuals, source))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.join("counterfactual.png").is_file())
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    subdirs.sort();
    let mut out = Vec::new();
    if !subdirs.is_empty() {
        for d in subdirs {
            let stem = d.file_name().expect("a folder name").to_string_lossy().into_owned();
            let rj = d.join(RESULT_FILE);
            let result = if rj.is_file() { Some(read_json::<ResultJson>(&rj)?) } else { None };
            out.push(Pair { real: find_real(&stem)?, cf: d.join("counterfactual.png"), stem, result, dir: Some(d) });
        }
    } else {
        for e in list_images(&args.counterfactuals)? {
            out.push(Pair { real: find_real(&e.stem)?, cf: e.path, stem: e.stem, result: None, dir: None });
        }
    }
    if out.is_empty() {
        return Err(bad(format!(
            "--counterfactuals {}: no images (PNG/JPEG/.npy) and no result folders with counterfactual.png",
            args.counterfactuals.display()
        )));
    }
    Ok(out)
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} ({{elapsed}}, eta {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    b
}

/// `[3, H, W]` in [0, 1] of an image at its own size.
fn unit_image(path: &Path) -> Result<(Vec<f32>, usize, usize), Error> {
    let a = read_image_native(path)?;
    Ok((a.data.iter().map(|v| (v + 1.0) / 2.0).collect(), a.shape[2], a.shape[3]))
}

fn model_err(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |reason| Error::Model { path: path.to_path_buf(), reason }
}

fn features(
    model: &FidInception,
    paths: &[PathBuf],
    batch: usize,
    what: &str,
    device: &Device,
) -> Result<Vec<f32>, Error> {
    let b = bar(paths.len(), what);
    let mut out = Vec::new();
    for chunk in paths.chunks(batch) {
        let imgs = chunk.iter().map(|p| unit_image(p)).collect::<Result<Vec<_>, _>>()?;
        out.extend(model.features(&imgs, device).map_err(|e| bad(format!("{what}: {e}")))?);
        b.inc(chunk.len() as u64);
    }
    b.finish_and_clear();
    Ok(out)
}

/// A batch of images at 224x224 in [-1, 1] (bicubic resize when needed), each mapped by `f`.
fn batch_224(paths: &[&PathBuf], f: impl Fn(&[f32]) -> Vec<f32>, device: &Device) -> Result<Tensor<4>, Error> {
    let mut data = Vec::with_capacity(paths.len() * 3 * INPUT_SIZE * INPUT_SIZE);
    for p in paths {
        data.extend(f(&read_image(p, (INPUT_SIZE, INPUT_SIZE))?.data));
    }
    Ok(Tensor::from_data(TensorData::new(data, [paths.len(), 3, INPUT_SIZE, INPUT_SIZE]), device))
}

use steex::io::host as to_vec;

/// What `steex metrics --json` prints (keys sorted).
#[derive(serde::Serialize)]
struct MetricsJson<'a> {
    n_pairs: usize,
    success_rate: Option<f64>,
    success_per_attribute: BTreeMap<&'a str, f64>,
    l1: Option<f64>,
    l2: Option<f64>,
    code_distance: Option<f64>,
    regions_changed: Option<f64>,
    fid: Option<f64>,
    fva: Option<f64>,
    mnac: Option<f64>,
}

impl<'a> From<&'a Summary> for MetricsJson<'a> {
    fn from(s: &'a Summary) -> Self {
        MetricsJson {
            n_pairs: s.n_pairs,
            success_rate: s.success_rate,
            success_per_attribute: s.success_per_attribute.iter().map(|(a, r)| (a.as_str(), *r)).collect(),
            l1: s.l1,
            l2: s.l2,
            code_distance: s.code_distance,
            regions_changed: s.regions_changed,
            fid: s.fid,
            fva: s.fva,
            mnac: s.mnac,
        }
    }
}

/// Runs `steex metrics`.
pub fn run(args: MetricsArgs, device: &Device) -> Result<(), Error> {
    if args.batch == 0 {
        return Err(bad("--batch must be at least 1".into()));
    }
    let pairs = pairs(&args)?;
    let n = pairs.len();
    let mut notes: Vec<String> = Vec::new();

    // Success and proximity.
    let mut success = SuccessTally::default();
    let mut prox = ProximityTally::default();
    let b = bar(n, "proximity");
    for p in &pairs {
        if let Some(r) = &p.result {
            success.add(r.explanation.success, Some(r.attribute.name.as_str()));
        }
        let cf = read_image_native(&p.cf)?;
        let size = (cf.shape[2], cf.shape[3]);
        let real = if image_size(&p.real)? == size { read_image_native(&p.real)? } else { read_image(&p.real, size)? };
        // Both in [-1, 1]: halve to get distances in [0, 1] units.
        let d = proximity(&real.data, &cf.data).map_err(|e| bad(format!("{}: {e}", p.stem)))?;
        prox.add_pixels(steex::metrics::Proximity { l1: d.l1 / 2.0, l2: d.l2 / 2.0 });
        if let Some(dir) = &p.dir {
            let (zi, zf) = (dir.join("z_initial.npy"), dir.join("z_final.npy"));
            if zi.is_file() && zf.is_file() {
                let (a, c) = (read_npy(&zi)?, read_npy(&zf)?);
                let s = a.shape.last().copied().unwrap_or(0);
                let ch = code_change(&a.data, &c.data, s, 1e-6).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
                prox.add_codes(ch);
            }
        }
        b.inc(1);
    }
    b.finish_and_clear();
    if success.total == 0 {
        notes.push("success rate: skipped (no result.json with `success`)".into());
    } else if success.total < n {
        notes.push(format!("success rate: over the {} of {n} pairs with a result.json", success.total));
    }
    if prox.code_distance().is_none() {
        notes.push("code distance: skipped (no z_initial.npy / z_final.npy)".into());
    }
    let mut summary = Summary::from_tallies(n, &success, &prox);

    // FID.
    match &args.inception {
        None => notes.push(
            "FID: skipped (no --inception; convert pytorch-fid's weights with `weights-convert inception`)".into(),
        ),
        Some(path) => {
            let model =
                FidInception::from_weights(&read_weights(path)?, device).map_err(|e| model_err(path)(e.to_string()))?;
            let real: Vec<PathBuf> = list_images(&args.real)?.into_iter().map(|e| e.path).collect();
            let cfs: Vec<PathBuf> = pairs.iter().map(|p| p.cf.clone()).collect();
            if real.len() < 2 || cfs.len() < 2 {
                notes.push("FID: skipped (needs at least 2 real and 2 counterfactual images)".into());
            } else {
                let dim = model.config().feature_dim();
                let fr = features(&model, &real, args.batch, "FID real", device)?;
                let fc = features(&model, &cfs, args.batch, "FID counterfactuals", device)?;
                summary.fid = Some(fid_from_features(&fr, &fc, dim).map_err(|e| bad(format!("FID: {e}")))?);
            }
        }
    }

    // FVA and MNAC: the models see both images of each pair at 224x224.
    match &args.face_model {
        None => notes.push("FVA: skipped (no --face-model; convert one with `weights-convert face`)".into()),
        Some(path) => {
            let model =
                FaceEmbedder::from_weights(&read_weights(path)?, device).map_err(|e| model_err(path)(e.to_string()))?;
            let (mut eq, mut ec) = (Vec::new(), Vec::new());
            let b = bar(n, "FVA");
            for chunk in pairs.chunks(args.batch) {
                let r: Vec<&PathBuf> = chunk.iter().map(|p| &p.real).collect();
                let c: Vec<&PathBuf> = chunk.iter().map(|p| &p.cf).collect();
                let e = |x: Tensor<4>| model.embed(x).map_err(|e| model_err(path)(e.to_string()));
                eq.extend(to_vec(e(batch_224(&r, face_input, device)?)?));
                ec.extend(to_vec(e(batch_224(&c, face_input, device)?)?));
                b.inc(chunk.len() as u64);
            }
            b.finish_and_clear();
            summary.fva = Some(fva(&eq, &ec, model.dim()).map_err(|e| bad(format!("FVA: {e}")))?);
        }
    }
    match &args.oracle {
        None => notes
            .push("MNAC: skipped (no --oracle; convert the reference's oracle with `weights-convert oracle`)".into()),
        Some(path) => {
            let model =
                Oracle::from_weights(&read_weights(path)?, device).map_err(|e| model_err(path)(e.to_string()))?;
            let k = model.num_outputs();
            if let Some(t) = args.oracle_target.filter(|&t| t >= k) {
                return Err(bad(format!("--oracle-target {t}: the oracle has {k} outputs")));
            }
            let targets: Vec<Option<usize>> = pairs
                .iter()
                .map(|p| {
                    args.oracle_target.or_else(|| celeba_index(&p.result.as_ref()?.attribute.name).filter(|&i| i < k))
                })
                .collect();
            let unknown = targets.iter().filter(|t| t.is_none()).count();
            if unknown > 0 {
                notes.push(format!(
                    "MNAC: target attribute unknown for {unknown} of {n} pairs: all {k} attributes counted there (give --oracle-target)"
                ));
            }
            let (mut lq, mut lc) = (Vec::new(), Vec::new());
            let b = bar(n, "MNAC");
            for chunk in pairs.chunks(args.batch) {
                let r: Vec<&PathBuf> = chunk.iter().map(|p| &p.real).collect();
                let c: Vec<&PathBuf> = chunk.iter().map(|p| &p.cf).collect();
                let l = |x: Tensor<4>| model.logits(x).map_err(|e| model_err(path)(e.to_string()));
                lq.extend(to_vec(l(batch_224(&r, <[f32]>::to_vec, device)?)?));
                lc.extend(to_vec(l(batch_224(&c, <[f32]>::to_vec, device)?)?));
                b.inc(chunk.len() as u64);
            }
            b.finish_and_clear();
            summary.mnac = Some(mnac(&lq, &lc, k, &targets).map_err(|e| bad(format!("MNAC: {e}")))?);
        }
    }

    for note in &notes {
        eprintln!("note: {note}");
    }
    if args.json {
        super::print_stdout(&(steex_io::json::to_pretty_sorted(&MetricsJson::from(&summary)) + "\n"));
    } else {
        super::print_stdout(&summary.table());
    }
    Ok(())
}
