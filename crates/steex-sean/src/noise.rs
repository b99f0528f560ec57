//! The noise ACE adds before its batch norm.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution as _, StandardNormal};

/// How ACE draws its per-pixel noise (one N(0, 1) value per image and pixel, shared by all
/// channels, scaled by the learned `noise_var`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseMode {
    /// No noise (`noise_var` treated as zero).
    Off,
    /// Fresh draws on every forward from the backend's generator, as the published code does.
    Reference,
    /// Draws from a generator seeded anew on every forward: the same seed gives the same
    /// image, call after call. Every image of a batch gets the maps a batch of one would
    /// get, so an image's result does not depend on the other images of its batch. The
    /// default for explanations.
    Seeded(u64),
    /// Draws from a generator seeded anew on every forward, one map per image as SEAN's
    /// `randn(B, ...)` draws them: each ACE layer takes the next `B * H * W` values of
    /// [`seeded_stream`] as its `[B, H, W]` maps (image after image). A batch of one draws
    /// exactly what [`NoiseMode::Seeded`] draws; in a larger batch every image gets its own
    /// noise (what training needs: the images of a batch do not share one map).
    SeededPerImage(u64),
}

impl std::str::FromStr for NoiseMode {
    type Err = String;
    /// `off`, `reference` or `seed:N` (and `seed-per-image:N`, which `Display` writes for
    /// [`NoiseMode::SeededPerImage`]).
    fn from_str(s: &str) -> Result<Self, String> {
        let seed = |prefix: &str| s.strip_prefix(prefix).and_then(|n| n.parse().ok());
        match s {
            "off" => Ok(NoiseMode::Off),
            "reference" => Ok(NoiseMode::Reference),
            _ => seed("seed:")
                .map(NoiseMode::Seeded)
                .or_else(|| seed("seed-per-image:").map(NoiseMode::SeededPerImage))
                .ok_or_else(|| format!("noise mode `{s}`: expected off, reference or seed:N")),
        }
    }
}

impl std::fmt::Display for NoiseMode {
    /// What [`std::str::FromStr`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoiseMode::Off => write!(f, "off"),
            NoiseMode::Reference => write!(f, "reference"),
            NoiseMode::Seeded(k) => write!(f, "seed:{k}"),
            NoiseMode::SeededPerImage(k) => write!(f, "seed-per-image:{k}"),
        }
    }
}

/// The N(0, 1) values [`NoiseMode::Seeded`]`(seed)` draws in one generator forward, the
/// first `n` of them: each ACE layer, in the reference's forward order, takes the next
/// `H * W` as its `[H, W]` map (row-major), the same for every image of the batch. A
/// reference implementation given this stream reproduces the seeded noise exactly (the
/// settings test of `steex explain --noise seed:N` does that against the reference loop).
/// [`NoiseMode::SeededPerImage`] takes the same stream `B * H * W` values at a time.
pub fn seeded_stream(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// One forward's stream of noise maps, drawn in the reference's order.
pub(crate) struct NoiseSource {
    mode: NoiseMode,
    rng: Option<StdRng>,
}

impl NoiseSource {
    pub(crate) fn new(mode: NoiseMode) -> Self {
        let rng = match mode {
            NoiseMode::Seeded(seed) | NoiseMode::SeededPerImage(seed) => Some(StdRng::seed_from_u64(seed)),
            _ => None,
        };
        NoiseSource { mode, rng }
    }

    /// The next `[B, 1, H, W]` N(0, 1) map, or `None` when noise is off.
    pub(crate) fn draw(&mut self, [b, h, w]: [usize; 3], device: &Device) -> Option<Tensor<4>> {
        match self.mode {
            NoiseMode::Off => None,
            NoiseMode::Reference => Some(Tensor::random([b, 1, h, w], Distribution::Normal(0.0, 1.0), device)),
            NoiseMode::Seeded(_) => {
                let rng = self.rng.as_mut().expect("seeded");
                let v: Vec<f32> = (0..h * w).map(|_| StandardNormal.sample(rng)).collect();
                Some(Tensor::<4>::from_data(TensorData::new(v, [1, 1, h, w]), device).expand([b, 1, h, w]))
            }
            NoiseMode::SeededPerImage(_) => {
                let rng = self.rng.as_mut().expect("seeded");
                let v: Vec<f32> = (0..b * h * w).map(|_| StandardNormal.sample(rng)).collect();
                Some(Tensor::<4>::from_data(TensorData::new(v, [b, 1, h, w]), device))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_maps_are_the_stream_in_order_and_shared_by_the_batch() {
        let device = Device::flex();
        let mut src = NoiseSource::new(NoiseMode::Seeded(7));
        let a = src.draw([2, 2, 3], &device).unwrap();
        let b = src.draw([2, 4, 4], &device).unwrap();
        let stream = seeded_stream(7, 6 + 16);
        let host = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
        let (a, b) = (host(a), host(b));
        assert_eq!(&a[..6], &stream[..6]);
        assert_eq!(&a[6..], &stream[..6], "the second image gets the first's map");
        assert_eq!(&b[..16], &stream[6..]);
        assert_ne!(stream, seeded_stream(8, 22));
        // A new forward starts the stream again.
        let mut again = NoiseSource::new(NoiseMode::Seeded(7));
        assert_eq!(host(again.draw([1, 2, 3], &device).unwrap()), stream[..6]);
        assert!(NoiseSource::new(NoiseMode::Off).draw([1, 2, 2], &device).is_none());
    }

    /// Per image: the stream `B * H * W` values at a time, image after image, so the two
    /// images of a batch get different maps; a batch of one draws what `Seeded` draws.
    #[test]
    fn per_image_maps_are_the_stream_image_after_image() {
        let device = Device::flex();
        let host = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
        let mut src = NoiseSource::new(NoiseMode::SeededPerImage(7));
        let a = src.draw([2, 2, 3], &device).unwrap();
        assert_eq!(a.dims(), [2, 1, 2, 3]);
        let b = host(src.draw([2, 4, 4], &device).unwrap());
        let a = host(a);
        let stream = seeded_stream(7, 12 + 32);
        assert_eq!(a, stream[..12]);
        assert_ne!(a[..6], a[6..], "the two images share one map");
        assert_eq!(b, stream[12..]);
        assert_ne!(b[..16], b[16..], "the two images share one map");
        // A batch of one: the same maps as `Seeded`, layer after layer.
        let mut one = NoiseSource::new(NoiseMode::SeededPerImage(7));
        let mut shared = NoiseSource::new(NoiseMode::Seeded(7));
        for size in [[1, 2, 3], [1, 4, 4], [1, 8, 8]] {
            assert_eq!(host(one.draw(size, &device).unwrap()), host(shared.draw(size, &device).unwrap()));
        }
        for m in [NoiseMode::Off, NoiseMode::Reference, NoiseMode::Seeded(3), NoiseMode::SeededPerImage(4)] {
            assert_eq!(m.to_string().parse::<NoiseMode>(), Ok(m));
        }
        assert!("seed-per-image:x".parse::<NoiseMode>().is_err());
    }
}
