//! `steex prepare celebamaskhq|celeba|bdd`: a dataset download to the folders the other
//! commands read (the library's [`steex::prepare`]).

use std::path::{Path, PathBuf};

use steex::Error;
use steex::error::bad;
use steex::prepare::celebamaskhq::{self, Layout, Splitter};
use steex::prepare::runner::{PrepareSummary, prepare_out, run_all, summarize, write_summary};
use steex::prepare::split::{read_mapping, read_partition};
use steex::prepare::{DatasetError, Outcome, Split, SplitRule, bdd, bdd_oia, celeba};

/// Arguments of `steex prepare`.
#[derive(clap::Args, Debug)]
pub struct PrepareArgs {
    #[command(subcommand)]
    pub dataset: Dataset,
}

/// The datasets `steex prepare` knows.
#[derive(clap::Subcommand, Debug)]
pub enum Dataset {
    /// CelebAMask-HQ: per-part masks to one label map per image (as `g_mask.py`), images
    /// beside them, split train/test: `OUT/{train,test}/{labels,images}/`.
    Celebamaskhq(CelebaMaskHqArgs),
    /// CelebA: aligned images center-cropped to 150 and resized bicubic to 128x128 (as
    /// `preprocess_celeba.py`), split by the official partition.
    Celeba(CelebaArgs),
    /// BDD100k segmentation: label PNGs (ids 0-18, 255 = unknown) to the generator's ids
    /// (255 -> 19, as STEEX's `pix2pix_dataset.py`) and to the published segmenter's
    /// training ids (+1, 255 -> 0, as `BDDDataset_for_deeplab.py`), images beside them,
    /// BDD100k's own splits: `OUT/{train,val}/{labels,segmenter_labels,images}/`. And
    /// BDD-OIA's action files to `OUT/oia/{train,val}.csv` for `steex train classifier`.
    Bdd(BddArgs),
}

/// What every `steex prepare` shares.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Output folder (must not be inside the input).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue an earlier run in --out: finished files are skipped.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub force: bool,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print the summary (`prepare.json`) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `steex prepare celebamaskhq`.
#[derive(clap::Args, Debug)]
pub struct CelebaMaskHqArgs {
    /// The unzipped `CelebAMask-HQ/` folder (`CelebA-HQ-img/`, `CelebAMask-HQ-mask-anno/`,
    /// the attribute and mapping files).
    #[arg(long)]
    pub root: PathBuf,
    /// CelebA's `list_eval_partition.txt` (default: ROOT/list_eval_partition.txt when
    /// present): test = CelebA's validation and test partitions. Without it the mapping's
    /// CelebA index splits as STEEX's loaders do.
    #[arg(long)]
    pub partition: Option<PathBuf>,
    /// Without the mapping file: the fraction of images in the test split.
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Without the mapping file: the seed of the --test-fraction split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `steex prepare celeba`.
#[derive(clap::Args, Debug)]
pub struct CelebaArgs {
    /// The unzipped `img_align_celeba/` folder.
    #[arg(long)]
    pub images: PathBuf,
    /// CelebA's `list_eval_partition.txt`: images go to OUT/{train,val,test}/images/
    /// (without it, all to OUT/images/).
    #[arg(long)]
    pub partition: Option<PathBuf>,
    /// CelebA's `list_attr_celeba.txt`, copied into OUT.
    #[arg(long)]
    pub attributes: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `steex prepare bdd` (one of --root and --oia at least).
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("bdd_input").required(true).multiple(true).args(["root", "oia"])))]
pub struct BddArgs {
    /// The `bdd100k/` folder: `seg/images/{train,val}/` and `seg/labels/{train,val}/`
    /// (`<stem>_train_id.png`), as STEEX reads it; or the newer download's `images/10k/` and
    /// `labels/sem_seg/masks/` (`<stem>.png`).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The BDD-OIA folder: `data/` (the images) and `{train,val}_25k_images_actions.json`,
    /// written as `OUT/oia/{train,val}.csv` (`file,move_forward,stop,turn_left,turn_right`;
    /// the images the published loader keeps: not "confuse", file present).
    #[arg(long)]
    pub oia: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

/// `steex prepare`.
pub fn run(args: PrepareArgs) -> Result<(), Error> {
    let (summary, common) = match args.dataset {
        Dataset::Celebamaskhq(a) => (celebamaskhq_run(&a)?, a.common),
        Dataset::Celeba(a) => (celeba_run(&a)?, a.common),
        Dataset::Bdd(a) => (bdd_run(&a)?, a.common),
    };
    write_summary(&common.out, &summary)?;
    eprintln!("{}\nwrote {}", summary.text(), common.out.display());
    if common.json {
        super::print_stdout(&format!("{}\n", steex_io::json::to_pretty(&summary)));
    }
    Ok(())
}

fn mkdirs(dirs: &[PathBuf]) -> Result<(), Error> {
    for d in dirs {
        std::fs::create_dir_all(d).map_err(DatasetError::io(d))?;
    }
    Ok(())
}

/// Copies `src` to `dst` atomically unless `dst` holds the same bytes.
fn copy_file(src: &Path, dst: &Path) -> Result<(), Error> {
    let bytes = std::fs::read(src).map_err(DatasetError::io(src))?;
    if std::fs::read(dst).is_ok_and(|b| b == bytes) {
        return Ok(());
    }
    Ok(steex::io::write_bytes(dst, &bytes)?)
}

fn celebamaskhq_run(a: &CelebaMaskHqArgs) -> Result<PrepareSummary, Error> {
    let layout = Layout::find(&a.root)?;
    let partition =
        a.partition.clone().or_else(|| Some(a.root.join("list_eval_partition.txt")).filter(|p| p.is_file()));
    let (splitter, rule) = match (&layout.mapping, partition) {
        (Some(m), Some(p)) => {
            (Splitter::Partition(read_mapping(m)?, read_partition(&p)?), SplitRule::Partition { partition: p })
        }
        (Some(m), None) => (Splitter::Mapping(read_mapping(m)?), SplitRule::Mapping { mapping: m.clone() }),
        (None, Some(p)) if a.partition.is_some() => {
            return Err(bad(format!(
                "--partition {}: needs {} to relate CelebAMask-HQ's images to CelebA's",
                p.display(),
                a.root.join(celebamaskhq::MAPPING_FILE).display()
            )));
        }
        (None, _) => {
            if !(a.test_fraction > 0.0 && a.test_fraction < 1.0) {
                return Err(bad(format!("--test-fraction {}: expected a number between 0 and 1", a.test_fraction)));
            }
            (
                Splitter::Fraction(a.test_fraction, a.seed),
                SplitRule::Fraction { test_fraction: a.test_fraction, seed: a.seed },
            )
        }
    };
    let (images, other) = layout.images()?;
    if images.is_empty() {
        return Err(DatasetError::NotDataset {
            root: a.root.clone(),
            dataset: "CelebAMask-HQ",
            expected: format!("images named {{k}}.jpg in {}", layout.images.display()),
        }
        .into());
    }
    let c = &a.common;
    let _lock = prepare_out(&c.out, &[&a.root], c.resume, c.force)?;
    let dirs: Vec<PathBuf> = [Split::Train, Split::Test]
        .iter()
        .flat_map(|s| ["labels", "images"].map(|d| c.out.join(s.name()).join(d)))
        .collect();
    mkdirs(&dirs)?;
    let outcomes = run_all(
        &images,
        |(k, _)| k.to_string(),
        "prepare celebamaskhq",
        c.threads,
        |(k, path)| celebamaskhq::prepare_one(&layout, &splitter, &c.out, *k, path),
    )?;
    let mut notes = Vec::new();
    if other > 0 {
        notes.push(format!("{other} other files in {} skipped (not {{k}}.jpg)", layout.images.display()));
    }
    if let Splitter::Partition(m, _) | Splitter::Mapping(m) = &splitter {
        let absent = m.keys().filter(|k| images.binary_search_by(|(i, _)| i.cmp(k)).is_err()).count();
        if absent > 0 {
            notes.push(format!(
                "{absent} images listed in {} are absent from {}",
                celebamaskhq::MAPPING_FILE,
                layout.images.display()
            ));
        }
    }
    let bare = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Written { missing_parts, .. } if missing_parts.len() == celebamaskhq::PARTS.len()))
        .count();
    if bare > 0 {
        notes.push(format!(
            "{bare} images have no part file at all: their label maps are all background (as g_mask.py)"
        ));
    }
    match &layout.attributes {
        Some(src) => {
            copy_file(src, &c.out.join(celebamaskhq::ATTRIBUTES_FILE))?;
            notes.push(format!("copied {}", celebamaskhq::ATTRIBUTES_FILE));
        }
        None => notes.push(format!("no {} in {}: none copied", celebamaskhq::ATTRIBUTES_FILE, a.root.display())),
    }
    Ok(summarize("celebamaskhq", rule, &outcomes, notes))
}

fn celeba_run(a: &CelebaArgs) -> Result<PrepareSummary, Error> {
    let (images, other) = celeba::list(&a.images)?;
    let partition = a.partition.as_deref().map(read_partition).transpose()?;
    if let Some(p) = &a.attributes
        && !p.is_file()
    {
        return Err(bad(format!("--attributes {}: not a file (expected list_attr_celeba.txt)", p.display())));
    }
    let c = &a.common;
    let mut inputs: Vec<&Path> = vec![&a.images];
    inputs.extend(a.partition.as_deref());
    let _lock = prepare_out(&c.out, &inputs, c.resume, c.force)?;
    let dirs: Vec<PathBuf> = match &partition {
        Some(_) => {
            [Split::Train, Split::Val, Split::Test].iter().map(|s| c.out.join(s.name()).join("images")).collect()
        }
        None => vec![c.out.join("images")],
    };
    mkdirs(&dirs)?;
    let outcomes = run_all(
        &images,
        |p| p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        "prepare celeba",
        c.threads,
        |p| celeba::prepare_one(partition.as_ref(), &c.out, p),
    )?;
    let mut notes = Vec::new();
    if other > 0 {
        notes.push(format!("{other} other files in {} skipped", a.images.display()));
    }
    if let Some(src) = &a.attributes {
        let name = src.file_name().map(PathBuf::from).unwrap_or_else(|| "list_attr_celeba.txt".into());
        copy_file(src, &c.out.join(&name))?;
        notes.push(format!("copied {}", name.display()));
    }
    let rule = match &a.partition {
        Some(p) => SplitRule::Partition { partition: p.clone() },
        None => SplitRule::None,
    };
    Ok(summarize("celeba", rule, &outcomes, notes))
}

fn bdd_run(a: &BddArgs) -> Result<PrepareSummary, Error> {
    // Everything is read and checked before --out is touched.
    let seg = match &a.root {
        Some(root) => {
            let layout = bdd::Layout::find(root)?;
            let (items, other) = layout.items()?;
            if items.is_empty() {
                return Err(DatasetError::NotDataset {
                    root: root.clone(),
                    dataset: "BDD100k (the bdd100k/ folder)",
                    expected: format!("JPEG images in {}/{{train,val}}", layout.images.display()),
                }
                .into());
            }
            Some((layout, items, other))
        }
        None => None,
    };
    let oia = match &a.oia {
        Some(root) => Some(oia_csvs(root)?),
        None => None,
    };
    let c = &a.common;
    let inputs: Vec<&Path> = a.root.iter().chain(a.oia.iter()).map(PathBuf::as_path).collect();
    let _lock = prepare_out(&c.out, &inputs, c.resume, c.force)?;
    let mut notes = Vec::new();
    let mut outcomes = Vec::new();
    let mut rule = SplitRule::None;
    if let Some((layout, items, other)) = seg {
        let dirs: Vec<PathBuf> =
            bdd::SPLITS.iter().flat_map(|s| bdd::OUT_DIRS.map(|d| c.out.join(s.name()).join(d))).collect();
        mkdirs(&dirs)?;
        outcomes = run_all(&items, bdd::Item::name, "prepare bdd", c.threads, |item| bdd::prepare_one(&c.out, item))?;
        notes.push(format!(
            "labels/: ids 0-18 kept, 255 (unknown) written as {} (as STEEX's pix2pix_dataset.py)",
            bdd::CLASSES
        ));
        notes.push(
            "segmenter_labels/: ids 0-18 written as 1-19, 255 (unknown) as 0 (as BDDDataset_for_deeplab.py; \
             train with --classes 20)"
                .into(),
        );
        if other > 0 {
            notes.push(format!("{other} other files in {} skipped", layout.images.display()));
        }
        rule = SplitRule::Folders { images: layout.images.clone() };
    }
    if let Some(csvs) = oia {
        let dir = c.out.join("oia");
        mkdirs(std::slice::from_ref(&dir))?;
        for (split, csv) in csvs {
            let path = dir.join(format!("{}.csv", split.name()));
            steex::io::write_bytes(&path, csv.text.as_bytes())?;
            notes.push(format!(
                "BDD-OIA {}: {} images to {} ({} without a file in data/ left out)",
                split.name(),
                csv.kept,
                path.display(),
                csv.missing
            ));
        }
    }
    Ok(summarize("bdd", rule, &outcomes, notes))
}

/// The CSV of each BDD-OIA split whose action file is present (at least one must be).
fn oia_csvs(root: &Path) -> Result<Vec<(Split, bdd_oia::ActionsCsv)>, Error> {
    let images = bdd_oia::images_dir(root);
    let present: Vec<Split> =
        bdd_oia::SPLITS.into_iter().filter(|&s| bdd_oia::actions_file(root, s).is_file()).collect();
    if !images.is_dir() || present.is_empty() {
        return Err(DatasetError::NotDataset {
            root: root.to_path_buf(),
            dataset: "BDD-OIA",
            expected: format!(
                "{} and {} or {}",
                images.display(),
                bdd_oia::actions_file(root, Split::Train).display(),
                bdd_oia::actions_file(root, Split::Val).display()
            ),
        }
        .into());
    }
    let mut out = Vec::new();
    for s in present {
        out.push((s, bdd_oia::actions_csv(&bdd_oia::actions_file(root, s), &images)?));
    }
    Ok(out)
}
