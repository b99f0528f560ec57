//! Adam on the host, with PyTorch's update order (`torch.optim.Adam`, no weight decay,
//! no amsgrad), so that float32 results follow the reference step for step.

/// Adam hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AdamConfig {
    /// Learning rate (0.01 in STEEX).
    pub lr: f64,
    /// First-moment decay (0.9).
    pub beta1: f64,
    /// Second-moment decay (0.999).
    pub beta2: f64,
    /// Denominator epsilon (1e-8).
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Moment estimates of one parameter vector.
#[derive(Debug, Clone)]
pub struct Adam {
    config: AdamConfig,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    /// Zero moments for `n` values.
    pub fn new(config: AdamConfig, n: usize) -> Self {
        Adam { config, m: vec![0.0; n], v: vec![0.0; n] }
    }

    /// Applies update number `step` (1-based) to the values `range` of `x` with gradient
    /// `g` (same indices).
    pub fn update(&mut self, x: &mut [f32], g: &[f32], range: std::ops::Range<usize>, step: usize) {
        let c = self.config;
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let bc1 = 1.0 - c.beta1.powi(step as i32);
        let bc2 = 1.0 - c.beta2.powi(step as i32);
        let step_size = (c.lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let eps = c.eps as f32;
        for i in range {
            let gi = g[i];
            // exp_avg.lerp_(grad, 1 - beta1)
            let w = 1.0 - b1;
            self.m[i] += w * (gi - self.m[i]);
            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            self.v[i] = self.v[i] * b2 + (1.0 - b2) * gi * gi;
            let denom = self.v[i].sqrt() / bc2_sqrt + eps;
            x[i] -= step_size * (self.m[i] / denom);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_by_about_lr_times_sign() {
        let mut a = Adam::new(AdamConfig::default(), 3);
        let mut x = vec![1.0, 1.0, 1.0];
        a.update(&mut x, &[2.0, -0.001, 0.0], 0..3, 1);
        assert!((x[0] - 0.99).abs() < 1e-6, "{x:?}");
        assert!((x[1] - 1.01).abs() < 1e-5, "{x:?}");
        assert_eq!(x[2], 1.0);
        // A range leaves the rest untouched.
        let mut y = vec![5.0, 5.0];
        a.update(&mut y, &[1.0, 1.0], 1..2, 2);
        assert_eq!(y[0], 5.0);
    }

    /// Six steps against `torch.optim.Adam` (lr 0.05, float32; `tools/adam_reference.py`
    /// prints these values): the bias corrections of steps 2 and later, and the moments'
    /// memory of earlier gradients.
    #[test]
    fn six_steps_follow_torch() {
        let want: [[f64; 3]; 6] = [
            [0.949999988079071, -0.45000001788139343, 2.049999952316284],
            [0.9017409086227417, -0.403391033411026, 2.047368288040161],
            [0.8538408279418945, -0.35973310470581055, 2.0641579627990723],
            [0.8058202862739563, -0.31867116689682007, 2.061526298522949],
            [0.7574583888053894, -0.27992695569992065, 2.071747064590454],
            [0.7086367607116699, -0.24327769875526428, 2.069115400314331],
        ];
        let mut a = Adam::new(AdamConfig { lr: 0.05, ..Default::default() }, 3);
        let mut x = vec![1.0f32, -0.5, 2.0];
        for (t, w) in (1..=6).zip(want) {
            let tf = t as f32;
            let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
            a.update(&mut x, &[0.3 * tf, -1.0 / tf, 0.01 * sign], 0..3, t);
            for (got, want) in x.iter().zip(w) {
                assert!((*got as f64 - want).abs() <= 2e-6, "step {t}: {x:?} vs torch {w:?}");
            }
        }
    }
}
