//! `steex classify`.

use std::path::PathBuf;

use burn::tensor::Device;
use steex::Error;
use steex::classifier::DecisionModel;
use steex::io::{load_classifier, read_image_native};

/// Arguments of `steex classify`.
#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Decision model weights (`weights-convert densenet|resnet`).
    #[arg(long)]
    pub classifier: PathBuf,
    /// Image: PNG/JPEG, or `.npy` float32 [1, 3, H, W] in [-1, 1]; classified at its size.
    #[arg(long)]
    pub image: PathBuf,
    /// Print only `{"logits", "probabilities", "names"}` as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `steex classify`.
pub fn classify(args: ClassifyArgs, device: &Device) -> Result<(), Error> {
    // The image is read (and checked) before the model loads.
    let image = read_image_native(&args.image)?;
    let model = load_classifier(&args.classifier, device)?;
    let (h, w) = (image.shape[2], image.shape[3]);
    model.check_input_size(h, w).map_err(|e| Error::image(args.image.clone(), e.to_string()))?;
    let logits = model.logits(image.to_tensor::<4>(device));
    let logits: Vec<f32> = steex::io::host(logits);
    let probs: Vec<f64> = logits.iter().map(|&l| 1.0 / (1.0 + (-(l as f64)).exp())).collect();
    let names = model.names();
    if args.json {
        let v = serde_json::json!({ "logits": logits, "probabilities": probs, "names": names });
        super::print_stdout(&format!("{v}\n"));
    } else {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(6);
        let mut s = format!("{:width$}  {:>10}  {:>11}\n", "output", "logit", "probability");
        for ((n, l), p) in names.iter().zip(&logits).zip(&probs) {
            s += &format!("{n:width$}  {l:>10.4}  {p:>11.4}\n");
        }
        super::print_stdout(&s);
    }
    Ok(())
}
