//! Helpers for the benchmarks and examples (not library API: hidden from the docs, may
//! change without notice): peak memory, and full-size models with random weights.

/// Peak resident memory of this process in bytes (`VmHWM`), where the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What burn's memory pools on `device` hold, in GiB: on a GPU, their high-water mark (pages
/// are kept for reuse); `None` on a backend that does not report it (the CPU's Flex).
pub fn device_reserved_gib(device: &burn::tensor::Device) -> Option<f64> {
    device.memory_pool_usage().map(|u| gib(u.bytes_reserved))
}

/// Bytes as GiB, for printing.
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Full-size models with random weights and a synthetic batch, for benchmarks and examples:
/// SEAN at a published preset and DenseNet121 with the preset's outputs.
pub struct RandomSetup {
    /// The generator.
    pub generator: steex_sean::SeanGenerator,
    /// The decision model.
    pub classifier: steex_classifier::DenseNet,
    /// Horizontal bands over every label.
    pub mask: steex_sean::SemanticMask,
    /// Uniform random images `[B, 3, H, W]` in [-1, 1].
    pub images: burn::tensor::Tensor<4>,
}

/// Builds a [`RandomSetup`] for `preset` (`celeba`, `celebamhq`, `bdd`) and `batch` images.
pub fn random_setup(
    preset: &str,
    batch: usize,
    path: steex_sean::ForwardPath,
    device: &burn::tensor::Device,
) -> Result<RandomSetup, String> {
    use burn::tensor::{Distribution, Int, Tensor};
    let config = steex_sean::SeanConfig::preset(preset)
        .ok_or_else(|| format!("unknown preset {preset}: expected celeba, celebamhq or bdd"))?;
    let (h, w) = config.image_size();
    let l = config.labels as i64;
    let generator = steex_sean::SeanGenerator::random(config, 0, device).map_err(|e| e.to_string())?.with_path(path);
    let dconf = steex_classifier::DenseNetConfig::densenet121(if preset == "bdd" { 4 } else { 3 });
    let weights = steex_nn::Weights::random(&dconf.expected_tensors(), &Default::default(), 1);
    let classifier = steex_classifier::DenseNet::load(&weights, dconf, device).map_err(|e| e.to_string())?;
    let rows = Tensor::<1, Int>::arange(0..h as i64, device).div_scalar((h as i64 + l - 1) / l);
    let labels = rows.reshape([1, h, 1]).expand([batch, h, w]);
    let mask = generator.mask(labels).map_err(|e| e.to_string())?;
    let images = Tensor::<4>::random([batch, 3, h, w], Distribution::Uniform(-1.0, 1.0), device);
    Ok(RandomSetup { generator, classifier, mask, images })
}
