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
}

impl std::str::FromStr for NoiseMode {
    type Err = String;
    /// `off`, `reference` or `seed:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(NoiseMode::Off),
            "reference" => Ok(NoiseMode::Reference),
            _ => s
                .strip_prefix("seed:")
                .and_then(|n| n.parse().ok())
                .map(NoiseMode::Seeded)
                .ok_or_else(|| format!("noise mode `{s}`: expected off, reference or seed:N")),
        }
    }
}

/// The N(0, 1) values [`NoiseMode::Seeded`]`(seed)` draws in one generator forward, the
/// first `n` of them: each ACE layer, in the reference's forward order, takes the next
/// `H * W` as its `[H, W]` map (row-major), the same for every image of the batch. A
/// reference implementation given this stream reproduces the seeded noise exactly (the
/// settings test of `steex explain --noise seed:N` does that against the reference loop).
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
            NoiseMode::Seeded(seed) => Some(StdRng::seed_from_u64(seed)),
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
}
