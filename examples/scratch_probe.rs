use burn::tensor::{Device, Int, Tensor, TensorData};
use steex::classifier::DecisionModel;
use steex::explain::{AdamConfig, ExplainSettings, explain};
use steex::sean::NoiseMode;
use steex::synth::scene::{HEIGHT, HELD_OUT_SEED, LAMP, WIDTH, scene};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let idx: u64 = args[2].parse().unwrap();
    let lambda: f64 = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(0.3);
    let device = Device::flex().autodiff();
    let g = steex::io::load_generator(&dir.join("generator.safetensors"), &device).unwrap();
    let c = steex::io::load_classifier(&dir.join("classifier.safetensors"), &device).unwrap();
    let sc = scene(HELD_OUT_SEED + idx);
    let img = Tensor::<4>::from_data(TensorData::new(sc.image.clone(), [1, 3, HEIGHT, WIDTH]), &device);
    let lab = Tensor::<3, Int>::from_data(TensorData::new(sc.labels.iter().map(|&k| k as i64).collect::<Vec<_>>(), [1, HEIGHT, WIDTH]), &device);
    let mask = g.mask(lab).unwrap();
    println!("lamp colour {:?} stop {}", sc.spec.appearance[LAMP].colour, sc.stop);
    let lamp_mean = |x: &[f32]| {
        let n = sc.labels.iter().filter(|&&k| k as usize == LAMP).count() as f32;
        let mut m = [0f32; 3];
        for (p, &k) in sc.labels.iter().enumerate() { if k as usize == LAMP { for ch in 0..3 { m[ch] += (x[ch * HEIGHT * WIDTH + p] + 1.0) / 2.0 / n; } } }
        m
    };
    for steps in [1usize, 10, 20, 40, 80] {
        let st = ExplainSettings { attribute: 0, steps, adam: AdamConfig { lr: 0.05, ..Default::default() }, lambda_prox: lambda, noise: NoiseMode::Off, early_stop: None, target: None, regions: Some(vec![LAMP]) };
        let e = explain(&g, &c, img.clone(), &mask, &st, &mut |_| {}).unwrap();
        let cf = steex::io::Array::from_tensor(e.counterfactual.clone()).data;
        let dz: f32 = e.z_initial.iter().zip(&e.z_final).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
        println!("steps {steps:>3}: logit {:>8.3} |dz| {dz:.3} lamp rgb {:?}", e.images[0].final_logits[0], lamp_mean(&cf));
    }
    // Swap in the lamp code of red-lamp scenes.
    let z0 = g.encode(img.clone(), &mask).unwrap();
    for j in 0..12u64 {
        let o = scene(HELD_OUT_SEED + 100 + j);
        if !o.stop { continue; }
        let oi = Tensor::<4>::from_data(TensorData::new(o.image.clone(), [1, 3, HEIGHT, WIDTH]), &device);
        let ol = Tensor::<3, Int>::from_data(TensorData::new(o.labels.iter().map(|&k| k as i64).collect::<Vec<_>>(), [1, HEIGHT, WIDTH]), &device);
        let om = g.mask(ol).unwrap();
        let zo = g.encode(oi, &om).unwrap();
        let z = Tensor::cat(vec![z0.clone().slice([0..1, 0..LAMP, 0..16]), zo.clone().slice([0..1, LAMP..LAMP + 1, 0..16])], 1);
        let dz: f32 = (z.clone() - z0.clone()).powf_scalar(2.0).sum().sqrt().into_scalar();
        let out = g.generate(&mask, z, NoiseMode::Off).unwrap();
        let l: f32 = c.logits(out.clone()).into_data().to_vec::<f32>().unwrap()[0];
        println!("swap red lamp from {}: logit {l:.3} |dz| {dz:.3} lamp rgb {:?}", j, lamp_mean(&steex::io::Array::from_tensor(out).data));
    }
}
