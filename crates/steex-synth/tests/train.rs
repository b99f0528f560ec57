//! Training in burn: a few Adam steps lower the loss, and the trained tensors are the
//! published layout's (the same names and shapes the loaders check).

use burn::tensor::Device;
use steex_synth::train::{TrainConfig, train_classifier, train_generator};
use steex_synth::world;

#[test]
fn generator_training_lowers_the_reconstruction_loss() {
    let device = Device::flex().autodiff();
    let cfg = TrainConfig { steps: 6, batch: 2, lr: 2e-3, seed: 9 };
    let mut losses = Vec::new();
    let p = train_generator(&cfg, &device, &mut |p| losses.push(p.loss)).unwrap();
    assert_eq!(losses.len(), 6);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[5] < 0.8 * losses[0], "{losses:?}");
    let exported = p.export();
    let (shapes, _) = world::generator_spec();
    assert_eq!(exported.len(), shapes.len());
    for (name, (shape, values)) in &exported {
        assert_eq!(&shapes[name], shape, "{name}");
        assert_eq!(values.len(), shape.iter().product::<usize>());
    }
    // Buffers stay as initialised; batch-norm statistics are not trained.
    let var = &exported["head_0.ace_0.param_free_norm.running_var"].1;
    assert!(var.iter().all(|&v| v == 1.0));
}

#[test]
fn classifier_training_lowers_its_loss_and_keeps_its_layout() {
    let device = Device::flex().autodiff();
    let cfg = TrainConfig { steps: 120, batch: 8, lr: 2e-3, seed: 9 };
    let mut losses = Vec::new();
    let p = train_classifier(&cfg, None, &device, &mut |p| losses.push(p.loss)).unwrap();
    assert_eq!(losses.len(), 120);
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    // Fresh scenes every step: compare the mean of the first and the last twenty steps.
    let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
    let (first, last) = (mean(&losses[..20]), mean(&losses[100..]));
    eprintln!("classifier loss: first twenty {first:.4}, last twenty {last:.4}");
    assert!(last < 0.8 * first, "the loss did not fall: {losses:?}");
    let w = p.weights().unwrap();
    let c = steex_classifier::AnyClassifier::from_weights(&w, &device).unwrap();
    assert_eq!(c.names(), &["stop".to_string()]);
}
