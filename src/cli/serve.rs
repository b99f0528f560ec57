//! `steex serve`: the explorer page (the server is the library's [`steex::serve`]).

use std::net::IpAddr;
use std::path::PathBuf;

use burn::tensor::Device;
use steex::Error;
use steex::serve::{ModelSource, ServeOptions, serve};

/// Arguments of `steex serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Serve the synthetic world with its bundled models (no files needed).
    #[arg(long, conflicts_with_all = ["generator", "classifier", "segmenter"])]
    pub demo: bool,
    /// Generator weights (`weights-convert sean`).
    #[arg(long, requires = "classifier")]
    pub generator: Option<PathBuf>,
    /// Decision model weights (`weights-convert densenet|resnet`).
    #[arg(long, requires = "generator")]
    pub classifier: Option<PathBuf>,
    /// Segmenter weights (`weights-convert deeplab`): uploads without a mask are segmented.
    #[arg(long, requires = "generator")]
    pub segmenter: Option<PathBuf>,
    /// An `explain-dir` output folder to browse (its images, scores and PNGs).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// The port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The address to listen on; the default serves this machine only.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
}

/// `steex serve`.
pub fn run(args: ServeArgs, device: &Device) -> Result<(), Error> {
    let models = match (args.demo, args.generator, args.classifier) {
        (true, _, _) => ModelSource::Demo,
        (false, Some(generator), Some(classifier)) => {
            ModelSource::Files { generator, classifier, segmenter: args.segmenter }
        }
        (false, None, None) if args.results.is_some() => ModelSource::None,
        _ => {
            return Err(Error::Argument(
                "give --demo, or --generator and --classifier (and --segmenter), or --results DIR".into(),
            ));
        }
    };
    serve(&ServeOptions { models, results: args.results, bind: args.bind, port: args.port }, device)
}
