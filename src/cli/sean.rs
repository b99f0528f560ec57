//! `steex encode` and `steex generate`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use steex::Error;
use steex::io::{
    Array, LabelMap, load_generator, png_bytes, read_header, read_image, read_npy, write_bytes, write_npy,
};
use steex::sean::{NoiseMode, SeanGenerator, SemanticMask};

/// Arguments of `steex encode`.
#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    /// Generator weights (`weights-convert sean`).
    #[arg(long)]
    pub generator: PathBuf,
    /// Query image: PNG/JPEG, or `.npy` float32 [1, 3, H, W] in [-1, 1].
    #[arg(long)]
    pub image: PathBuf,
    /// Label map: 8-bit single-channel PNG (value = label id, 255 = unknown), of the image's
    /// aspect ratio (any size: resized nearest to the model's).
    #[arg(long)]
    pub mask: PathBuf,
    /// Style codes to write: `.npy` float32 [1, L, S].
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `steex generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Generator weights (`weights-convert sean`).
    #[arg(long)]
    pub generator: PathBuf,
    /// Label map: 8-bit single-channel PNG (value = label id, 255 = unknown).
    #[arg(long)]
    pub mask: PathBuf,
    /// Style codes: `.npy` float32 [1, L, S].
    #[arg(long)]
    pub codes: PathBuf,
    /// ACE noise: off, reference (fresh draws, as published) or seed:N (reproducible).
    #[arg(long, default_value = "seed:0")]
    pub noise: NoiseMode,
    /// Image to write: `.npy` (float32 [1, 3, H, W] in [-1, 1]) or `.png` (8-bit RGB).
    #[arg(long)]
    pub out: PathBuf,
}

/// Reads a mask, checks its ids and resizes it (nearest, as Pillow does) to the model's size.
fn model_mask(g: &SeanGenerator, path: &Path, device: &Device) -> Result<(LabelMap, SemanticMask), Error> {
    let raw = LabelMap::read(path)?;
    let (h, w) = g.config().image_size();
    raw.check(g.config().labels, path)?;
    let mask = raw.resized_pil(h, w);
    let sm = g.mask(mask.to_tensor(device)).map_err(|e| Error::mask(path, e.to_string()))?;
    Ok((raw, sm))
}

/// Checks a mask file against the generator's label count, read from the weights file's
/// header, before the generator loads: the mask decodes and its ids are labels.
fn check_mask_first(generator: &Path, mask: &Path) -> Result<LabelMap, Error> {
    let labels: usize = read_header(generator)?.meta(generator, "labels")?;
    let raw = LabelMap::read(mask)?;
    raw.check(labels, mask)?;
    Ok(raw)
}

fn check_out(path: &Path, allowed: &[&str]) -> Result<String, Error> {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).unwrap_or_default();
    if !allowed.contains(&ext.as_str()) {
        return Err(Error::Argument(format!("--out {}: expected a {} file", path.display(), allowed.join(" or ."))));
    }
    Ok(ext)
}

/// `steex encode`.
pub fn encode(args: EncodeArgs, device: &Device) -> Result<(), Error> {
    check_out(&args.out, &["npy"])?;
    let raw = check_mask_first(&args.generator, &args.mask)?;
    raw.check_fits(&args.mask, &args.image, steex::io::image_size(&args.image)?)?;
    let g = load_generator(&args.generator, device)?;
    let image = read_image(&args.image, g.config().image_size())?.to_tensor::<4>(device);
    let (_, mask) = model_mask(&g, &args.mask, device)?;
    let codes = g.encode(image, &mask)?;
    write_npy(&args.out, &Array::from_tensor(codes))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// `steex generate`.
pub fn generate(args: GenerateArgs, device: &Device) -> Result<(), Error> {
    let ext = check_out(&args.out, &["npy", "png"])?;
    check_mask_first(&args.generator, &args.mask)?;
    let codes = read_npy(&args.codes)?;
    let header = read_header(&args.generator)?;
    let want = [1, header.meta(&args.generator, "labels")?, header.meta::<usize>(&args.generator, "style_length")?];
    if codes.shape != want {
        return Err(Error::npy(args.codes.clone(), format!("codes have shape {:?}, expected {want:?}", codes.shape)));
    }
    let g = load_generator(&args.generator, device)?;
    let (_, mask) = model_mask(&g, &args.mask, device)?;
    let image = g.generate(&mask, codes.to_tensor::<3>(device), args.noise)?;
    let out = Array::from_tensor(image);
    if ext == "npy" {
        write_npy(&args.out, &out)?;
    } else {
        let (h, w) = (out.shape[2], out.shape[3]);
        write_bytes(&args.out, &png_bytes(&out.data[..3 * h * w], h, w))?;
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
