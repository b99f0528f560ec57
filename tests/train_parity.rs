//! One training step against PyTorch (`tools/make_train_fixtures.py`): a reduced DenseNet,
//! two reduced ResNets (BCE) and a reduced DeepLabV3 (cross-entropy, label 0 ignored) in
//! train mode (batch statistics, running statistics updated with
//! momentum 0.1), `BCEWithLogitsLoss`, one `torch.optim.Adam` step at lr 1e-4, computed by
//! PyTorch in float64. The loss must match to 1e-5 relative, the updated weights (running
//! statistics included) to 1e-4 relative, the gradients to 1e-3 relative (PyTorch's own
//! float32 gradients are 1.3e-4 off the float64 ones on the DenseNet).
//!
//! Adam's first step moves each weight by `lr * g / (|g| + eps)`, about `lr * sign(g)`: for
//! a gradient that is zero in exact arithmetic (some batch-norm biases here, to 1e-17) its
//! float32 value is round-off, and so is the sign of the step. Such elements (|g| below
//! 1e-6 of their tensor's largest) are only checked to move by at most `lr`.

mod common;

use common::*;
use steex_train::checkpoint::read_safetensors;
use steex_train::data::HostBatch;
use steex_train::params::{HostTensors, TrainParams};
use steex_train::run::{BN_MOMENTUM, Common, Task};
use steex_train::{Arch, ClassifierRecipe, SegmenterRecipe};

fn read(path: &std::path::Path) -> HostTensors {
    read_safetensors(&std::fs::read(path).unwrap(), path).unwrap().0
}

/// `max |a - b| / max |b|` over a tensor.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &x| m.max(x.abs() as f64)).max(1e-12);
    a.iter().zip(b).fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs())) / scale
}

fn check(name: &str) {
    let dir = fixture(&format!("train_step/{name}"));
    let initial = read(&dir.join("initial.safetensors"));
    let batch = read(&dir.join("batch.safetensors"));
    let expected = read(&dir.join("expected.safetensors"));
    let device = test_device().autodiff();
    // The model from the tensor shapes, as weights-convert infers it, trained through its task.
    let shape = |n: &str| initial.get(n).map(|(s, _)| s.clone());
    let common = Common {
        epochs: 1,
        batch: 4,
        lr: 1e-4,
        step_size: 10,
        gamma: 0.5,
        seed: 0,
        flip: false,
        workers: 1,
        strict: true,
        size: (batch["images"].0[2], batch["images"].0[3]),
    };
    let task: Box<dyn Task> = if initial.contains_key("classifier.weight") {
        let c = steex::classifier::DenseNetConfig::infer(shape).unwrap();
        let names = (0..c.classes).map(|i| format!("o{i}")).collect();
        Box::new(ClassifierRecipe { arch: Arch::DenseNet(c), names, common })
    } else if initial.contains_key("resnet.fc.weight") {
        let c = steex::classifier::ResNetConfig::infer("resnet", shape).unwrap();
        let names = (0..initial["resnet.fc.weight"].0[0]).map(|i| format!("o{i}")).collect();
        Box::new(ClassifierRecipe { arch: Arch::ResNet(c), names, common })
    } else {
        let config = steex::deeplab::DeepLabConfig::infer(shape).unwrap();
        // The fixture's ASPP dropout is off (tools/make_train_fixtures.py).
        Box::new(SegmenterRecipe { config, count_background: false, dropout: 0.0, common })
    };
    let mut params = TrainParams::new(&initial, &task.metadata(), &device);
    let b = HostBatch {
        index: 0,
        images: batch["images"].1.clone(),
        targets: batch["targets"].1.clone(),
        len: batch["images"].0[0],
        skipped: Vec::new(),
    };
    let (loss, stats) = task.loss(&params, &b, &device).unwrap();
    let got = steex::io::host(loss.clone())[0];
    let want = expected["loss"].1[0];
    let loss_rel = ((got - want) / want).abs();
    assert!(loss_rel < 1e-5, "{name}: loss {got} vs PyTorch {want} ({loss_rel:e} relative)");
    let grads = loss.backward();
    let (mut worst_grad, mut worst_after) = ((0f64, String::new()), (0f64, String::new()));
    let mut checked = 0;
    for (n, (_, g)) in expected.iter().filter_map(|(k, v)| k.strip_prefix("grad.").map(|n| (n, v))) {
        let mine = params.gradient(n, &grads).unwrap_or_else(|| panic!("{name}: no gradient for {n}"));
        let r = rel(&mine, g);
        if r > worst_grad.0 {
            worst_grad = (r, n.to_string());
        }
        checked += 1;
    }
    assert!(checked > 10, "{name}: {checked} gradients");
    params.adam_step(&grads, 1e-4);
    params.update_running_stats(&stats, BN_MOMENTUM).unwrap();
    let after = params.export();
    let mut moved = 0;
    for (n, (_, v)) in expected.iter().filter_map(|(k, v)| k.strip_prefix("after.").map(|n| (n, v))) {
        let (_, mine) = &after[n];
        let before = &initial[n].1;
        let (mut mine, mut v) = (mine.clone(), v.clone());
        if let Some((_, g)) = expected.get(&format!("grad.{n}")) {
            let gmax = g.iter().fold(0f32, |m, x| m.max(x.abs()));
            for i in 0..g.len() {
                if g[i].abs() <= 1e-6 * gmax {
                    assert!((mine[i] - before[i]).abs() <= 1.0001e-4, "{name}: {n}[{i}] moved more than lr");
                    (mine[i], v[i]) = (before[i], before[i]);
                }
            }
        }
        let r = rel(&mine, &v);
        if r > worst_after.0 {
            worst_after = (r, n.to_string());
        }
        moved += (rel(before, &v) > 1e-6) as usize;
    }
    assert_eq!(after.len(), initial.len());
    // Every tensor moved (weights by Adam, running statistics by the batch): the check bites.
    assert_eq!(moved, initial.len(), "{name}: some tensors did not move in PyTorch");
    eprintln!("{name}: loss {got} ({loss_rel:.1e}), worst gradient {worst_grad:?}, worst updated {worst_after:?}");
    assert!(worst_grad.0 < 1e-3, "{name}: gradient of {} differs by {:e} relative", worst_grad.1, worst_grad.0);
    assert!(worst_after.0 < 1e-4, "{name}: updated {} differs by {:e} relative", worst_after.1, worst_after.0);
}

#[test]
fn densenet_step_matches_pytorch() {
    check("densenet");
}

#[test]
fn resnet_basic_step_matches_pytorch() {
    check("resnet_basic");
}

#[test]
fn resnet_bottleneck_step_matches_pytorch() {
    check("resnet_bottleneck");
}

#[test]
fn deeplab_step_matches_pytorch() {
    check("deeplab");
}
