//! `steex segment`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use steex::Error;
use steex::deeplab::LabelConvention;
use steex::explain::presets::{Preset, region_names};
use steex::io::{load_segmenter, read_image, read_image_native, segment_to_labels, write_bytes, write_npy};
use steex::render::{label_preview, png};

/// Which ids the label map holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Labels {
    /// The segmenter's class ids as they are.
    Raw,
    /// The generator's label ids (BDD's shift by one undone, class 0 -> 255 = unknown), so
    /// the mask feeds `steex explain` directly.
    Generator,
}

/// Arguments of `steex segment`.
#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    /// Segmenter weights (`weights-convert deeplab`).
    #[arg(long)]
    pub segmenter: PathBuf,
    /// Image: PNG/JPEG, or `.npy` float32 [1, 3, H, W] in [-1, 1]; segmented at its size,
    /// or at --size.
    #[arg(long)]
    pub image: PathBuf,
    /// Resize the image (bicubic, as Pillow) to WIDTHxHEIGHT before segmenting, as the
    /// published `infer_masks.py` does (`256x256` for CelebAMask-HQ, `512x256` for BDD); the
    /// label map is written at that size.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Label map to write (8-bit PNG, one id per pixel); a colour preview with a legend is
    /// written beside it as `<stem>.preview.png`.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the raw logits, float32 [1, C, H, W].
    #[arg(long)]
    pub logits: Option<PathBuf>,
    /// Ids to write.
    #[arg(long, value_enum, default_value = "raw")]
    pub labels: Labels,
}

/// `WIDTHxHEIGHT` (as `512x256`) to `(height, width)`.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("`{s}`: expected WIDTHxHEIGHT, as 512x256"))?;
    let n = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| (8..=8192).contains(&n));
    match (n(w), n(h)) {
        (Some(w), Some(h)) => Ok((h, w)),
        _ => Err(format!("`{s}`: expected WIDTHxHEIGHT with sides from 8 to 8192, as 512x256")),
    }
}

/// The preview's path: `MASK.png` -> `MASK.preview.png`.
pub fn preview_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{stem}.preview.png"))
}

/// `steex segment`.
pub fn run(args: SegmentArgs, device: &Device) -> Result<(), Error> {
    if !args.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return Err(Error::Argument(format!("--out {}: expected a .png file", args.out.display())));
    }
    // The image is read (and checked) before the model loads.
    let image = match args.size {
        Some(size) => read_image(&args.image, size)?,
        None => read_image_native(&args.image)?,
    };
    let (h, w) = (image.shape[2], image.shape[3]);
    if h < 8 || w < 8 {
        return Err(Error::image(args.image.clone(), format!("a {w}x{h} image is too small to segment")));
    }
    let (model, preset) = load_segmenter(&args.segmenter, device)?;
    let classes = model.config().classes;
    let (gen_labels, logits, raw) = segment_to_labels(&model, preset.as_deref(), &image, device);
    let p = preset.as_deref().and_then(Preset::by_name);
    let conv = LabelConvention::detect(preset.as_deref(), classes);
    let (labels, names): (Vec<u8>, Vec<String>) = match args.labels {
        Labels::Generator => {
            let l = classes;
            (gen_labels.labels.clone(), region_names(l, p))
        }
        Labels::Raw => {
            let names = match conv {
                LabelConvention::Identity => region_names(classes, p),
                LabelConvention::ShiftedByOne => {
                    let mut n = vec!["unknown".to_string()];
                    n.extend(region_names(classes, p).into_iter().take(classes - 1));
                    n
                }
            };
            (raw.iter().map(|&k| k as u8).collect(), names)
        }
    };
    let bytes = steex::io::gray_png(&labels, h, w);
    if let Some(lp) = &args.logits {
        write_npy(lp, &logits)?;
    }
    write_bytes(&preview_path(&args.out), &png(&label_preview(&labels, h, w, &names)))?;
    write_bytes(&args.out, &bytes)?;
    eprintln!("wrote {} and {}", args.out.display(), preview_path(&args.out).display());
    Ok(())
}
