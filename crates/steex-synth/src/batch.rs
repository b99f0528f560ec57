//! Scenes as tensors: what the training, the demo and the diagnostics feed the models.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::scene::{HEIGHT, Scene, WIDTH, scene};

/// A batch of scenes as tensors.
pub struct Batch {
    /// `[B, 3, H, W]` in [-1, 1].
    pub images: Tensor<4>,
    /// `[B, H, W]` label maps.
    pub labels: Tensor<3, Int>,
    /// `[B, 1]` decisions (1 = stop).
    pub stop: Tensor<2>,
}

/// The scenes of `seeds` as one batch on `device`.
pub fn batch(seeds: &[u64], device: &Device) -> Batch {
    let scenes: Vec<Scene> = seeds.iter().map(|&s| scene(s)).collect();
    batch_of(&scenes, device)
}

/// Rendered scenes as one batch on `device`.
pub fn batch_of(scenes: &[Scene], device: &Device) -> Batch {
    let b = scenes.len();
    let images: Vec<f32> = scenes.iter().flat_map(|s| s.image.iter().copied()).collect();
    let labels: Vec<i64> = scenes.iter().flat_map(|s| s.labels.iter().map(|&k| k as i64)).collect();
    let stop: Vec<f32> = scenes.iter().map(|s| s.stop as u8 as f32).collect();
    Batch {
        images: Tensor::from_data(TensorData::new(images, [b, 3, HEIGHT, WIDTH]), device),
        labels: Tensor::from_data(TensorData::new(labels, [b, HEIGHT, WIDTH]), device),
        stop: Tensor::from_data(TensorData::new(stop, [b, 1]), device),
    }
}
