//! Street scenes with a traffic light, drawn from a seed, and the hidden rule that decides
//! `stop`: the lamp is red. The lamp is a disc: a lit lens of the lamp's colour in a dark
//! housing ([`HOUSING_RIM`] pixels wide, labelled `lamp` too, as a traffic light's head is
//! one object). Everything else in the scene (sky, ground, building, pole: their
//! colours, shading, texture and placement) varies freely and has no bearing on the decision.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use steex_io::hsv_to_rgb as hsv;

/// Image height in pixels.
pub const HEIGHT: usize = 64;
/// Image width in pixels.
pub const WIDTH: usize = 64;
/// Region names, by label id.
pub const REGIONS: [&str; 5] = ["sky", "ground", "building", "pole", "lamp"];
/// Label ids of the regions the rule reads (only the lamp).
pub const CAUSAL: [usize; 1] = [LAMP];
/// Label id of the lamp.
pub const LAMP: usize = 4;
/// The decision's name.
pub const ATTRIBUTE: &str = "stop";
/// Width in pixels of the lamp's housing: the outer ring of the lamp's disc, a dark grey of
/// [`HOUSING_GREY`] whatever the lamp's colour (the lit lens is the disc inside it).
pub const HOUSING_RIM: f32 = 3.0;
/// The housing's grey level (RGB in [0, 1]). A grey adds nothing to a colour's redness, so
/// the mean colour of the lamp's pixels is red exactly when the lens is.
pub const HOUSING_GREY: f32 = 0.1;

/// How one region looks: a base colour, a linear shading and a banded texture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Appearance {
    /// Base colour, RGB in [0, 1].
    pub colour: [f32; 3],
    /// Brightness change across the region (-0.25..0.25), vertical for the sky and ground,
    /// horizontal for the building and pole, radial for the lamp.
    pub shading: f32,
    /// Contrast of the horizontal bands (floors of the building, furrows of the ground).
    pub texture: f32,
}

impl Appearance {
    /// `self` moved by `t` toward `other` (colour, shading and texture alike; `t = 1` gives
    /// `other` exactly).
    pub fn lerp(&self, other: &Appearance, t: f32) -> Appearance {
        if t == 1.0 {
            return *other;
        }
        let mix = |a: f32, b: f32| a + (b - a) * t;
        Appearance {
            colour: [0, 1, 2].map(|c| mix(self.colour[c], other.colour[c])),
            shading: mix(self.shading, other.shading),
            texture: mix(self.texture, other.texture),
        }
    }
}

/// Where things are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// First row of the ground.
    pub horizon: usize,
    /// Building: left column, width, top row (it stands on the horizon).
    pub building: (usize, usize, usize),
    /// Pole: left column (4 pixels wide).
    pub pole_x: usize,
    /// Lamp: centre row, radius (centred on the pole).
    pub lamp: (usize, usize),
}

/// Everything that defines a scene, from which it is rendered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneSpec {
    /// Placement.
    pub layout: Layout,
    /// Per region (by label id).
    pub appearance: [Appearance; 5],
}

/// A rendered scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// What it was rendered from.
    pub spec: SceneSpec,
    /// RGB, channel-major `[3, H, W]`, in [-1, 1] (the generator's range).
    pub image: Vec<f32>,
    /// Label map `[H, W]` (ids into [`REGIONS`]).
    pub labels: Vec<u8>,
    /// The decision: `stop` (1) or not (0).
    pub stop: bool,
}

/// Hue in degrees [0, 360) of an RGB colour (0 for greys).
pub fn hue(c: [f32; 3]) -> f32 {
    let [r, g, b] = c;
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let d = max - min;
    if d <= 1e-6 {
        return 0.0;
    }
    let h = if max == r {
        60.0 * (((g - b) / d) % 6.0)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    (h + 360.0) % 360.0
}

/// The hidden rule, on a colour: red (hue within 40 degrees of 0, and not a grey) means
/// stop. The same as `redness(c) > 0`.
pub fn is_red(c: [f32; 3]) -> bool {
    redness(c) > 0.0
}

/// How red a colour is, as a signed margin to the rule's boundary, linear in RGB by pieces:
/// `r - min(g, b) - 1.5 |g - b|`. Positive exactly when red is the largest channel and the
/// hue is within 40 degrees of red (equivalently `|g - b| < 2/3 (r - min(g, b))`); zero for
/// greys. Its gradient points from any colour toward red (raise red, lower the larger
/// of green and blue), which is what a decision model trained on it passes on to an
/// explanation (a hue-based margin is undefined at the greys, where explanations stalled).
pub fn redness(c: [f32; 3]) -> f32 {
    let [r, g, b] = c;
    r - g.min(b) - 1.5 * (g - b).abs()
}

impl SceneSpec {
    /// The scene of `seed`: layout uniform; each region's colour drawn from its own range of
    /// hue, saturation and value (a street's: bluish sky, greyish-brown ground, buildings of
    /// any hue, a dark pole), its shading and texture uniform; the lamp red or green with
    /// equal chance.
    ///
    /// The ranges keep a scene's overall colour cast within a narrow band: SEAN's style
    /// encoder normalises every image (instance norm), so it cannot see the cast, and its
    /// generator can only reconstruct it as far as the world makes it predictable.
    pub fn sample(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed);
        let horizon = rng.random_range(36..=46);
        let bw = rng.random_range(14..=26);
        let building = (rng.random_range(0..=WIDTH - bw), bw, rng.random_range(8..=horizon - 12));
        let pole_x = rng.random_range(8..=WIDTH - 12);
        let radius = rng.random_range(11..=14);
        let lamp = (rng.random_range(radius + 2..=horizon - radius - 6), radius);
        let region =
            |rng: &mut StdRng, h: (f32, f32), s: (f32, f32), v: (f32, f32), shading: f32, texture: (f32, f32)| {
                Appearance {
                    colour: hsv(rng.random_range(h.0..h.1), rng.random_range(s.0..s.1), rng.random_range(v.0..v.1)),
                    shading: rng.random_range(-shading..shading),
                    texture: rng.random_range(texture.0..texture.1),
                }
            };
        let sky = region(&mut rng, (190.0, 230.0), (0.15, 0.55), (0.7, 0.95), 0.25, (0.0, 0.03));
        let ground = region(&mut rng, (15.0, 50.0), (0.0, 0.45), (0.25, 0.55), 0.25, (0.0, 0.12));
        let walls = region(&mut rng, (0.0, 360.0), (0.1, 0.6), (0.35, 0.85), 0.25, (0.02, 0.12));
        let pole = region(&mut rng, (0.0, 360.0), (0.0, 0.2), (0.15, 0.45), 0.25, (0.0, 0.01));
        let red = rng.random_bool(0.5);
        let lamp_appearance = Self::lamp_appearance(&mut rng, red);
        SceneSpec {
            layout: Layout { horizon, building, pole_x, lamp },
            appearance: [sky, ground, walls, pole, lamp_appearance],
        }
    }

    /// A training scene of `seed`: [`SceneSpec::sample`], but half the time the lamp takes
    /// any colour (hue 0..360, saturation 0..1, value 0.3..1), labelled by the same rule.
    /// The world's lamps are saturated reds and greens; models trained on the whole colour
    /// range also know the colours between, which an explanation passes through.
    pub fn sample_for_training(seed: u64) -> Self {
        let mut s = Self::sample(seed);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x1a4b_1a4b_1a4b_1a4b);
        if rng.random_bool(0.5) {
            s.appearance[LAMP].colour =
                hsv(rng.random_range(0.0..360.0), rng.random_range(0.0..1.0), rng.random_range(0.3..1.0));
        }
        s
    }

    /// A lamp appearance: red (hue within 25 degrees of 0) or green (hue 95..150).
    pub fn lamp_appearance(rng: &mut impl Rng, red: bool) -> Appearance {
        let h = if red { rng.random_range(-25.0..25.0) } else { rng.random_range(95.0..150.0) };
        Appearance {
            colour: hsv(h, rng.random_range(0.65..1.0), rng.random_range(0.65..1.0)),
            shading: rng.random_range(0.0..0.25),
            texture: 0.0,
        }
    }

    /// The decision the hidden rule gives: it reads the lamp's appearance and nothing else.
    pub fn stop(&self) -> bool {
        is_red(self.appearance[LAMP].colour)
    }

    /// Label map `[H, W]`, drawn on a grid of 2 x 2 pixel blocks: SEAN's last style layer
    /// works at half the image size, where it sees such a map exactly (a map with finer
    /// borders reaches it shifted by a pixel, which puts a one-pixel ring of every region in
    /// its neighbour's style).
    pub fn labels(&self) -> Vec<u8> {
        let l = &self.layout;
        let mut m = vec![0u8; HEIGHT * WIDTH];
        let (bx, bw, by) = l.building;
        let (ly, r) = l.lamp;
        let lx = l.pole_x as f32 + 1.5;
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                // Drawn on a grid of 2 x 2 blocks: each block takes the label of its first
                // pixel (the shapes) or of its centre (the lamp's disc).
                let (y, x, yi, xi) = (y & !1, x & !1, y, x);
                let mut k = if y >= l.horizon { 1 } else { 0 };
                if (bx..bx + bw).contains(&x) && (by..l.horizon).contains(&y) {
                    k = 2;
                }
                if (l.pole_x..l.pole_x + 4).contains(&x) && y > ly && y < l.horizon + 4 {
                    k = 3;
                }
                let (dx, dy) = (x as f32 + 0.5 - lx, y as f32 + 0.5 - ly as f32);
                if dx * dx + dy * dy <= (r as f32 + 0.5).powi(2) {
                    k = LAMP as u8;
                }
                m[yi * WIDTH + xi] = k;
            }
        }
        m
    }

    /// A pixel's distance from the lamp's centre, and the radius of its lens.
    fn lamp_distance(&self, y: usize, x: usize) -> (f32, f32) {
        let (ly, r) = self.layout.lamp;
        let (dx, dy) = (x as f32 - (self.layout.pole_x as f32 + 1.5), y as f32 - ly as f32);
        ((dx * dx + dy * dy).sqrt(), r as f32 + 0.5 - HOUSING_RIM)
    }

    /// Renders the scene.
    pub fn render(&self) -> Scene {
        let labels = self.labels();
        let l = &self.layout;
        let (bx, bw, by) = l.building;
        let mut image = vec![0f32; 3 * HEIGHT * WIDTH];
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                let k = labels[y * WIDTH + x] as usize;
                let a = &self.appearance[k];
                // Position in [0, 1] across the region for shading, and the band phase.
                let (t, band) = match k {
                    0 => (y as f32 / l.horizon as f32, 0.0),
                    1 => {
                        let d = (y - l.horizon) as f32;
                        (d / (HEIGHT - l.horizon) as f32, if (d as usize / 3).is_multiple_of(2) { 1.0 } else { -1.0 })
                    }
                    2 => {
                        let d = y.saturating_sub(by);
                        ((x - bx.min(x)) as f32 / bw as f32, if (d / 4) % 2 == 0 { 1.0 } else { -1.0 })
                    }
                    3 => ((x - l.pole_x.min(x)) as f32 / 4.0, 0.0),
                    _ => {
                        let (d, lens) = self.lamp_distance(y, x);
                        if d > lens {
                            for c in 0..3 {
                                image[(c * HEIGHT + y) * WIDTH + x] = 2.0 * HOUSING_GREY - 1.0;
                            }
                            continue;
                        }
                        (d / lens, 0.0)
                    }
                };
                let gain = if k == LAMP { 1.0 - a.shading * t } else { 1.0 + a.shading * (t - 0.5) * 2.0 };
                for (c, v) in a.colour.iter().enumerate() {
                    let v = (v * gain + a.texture * band * 0.5).clamp(0.0, 1.0);
                    image[(c * HEIGHT + y) * WIDTH + x] = 2.0 * v - 1.0;
                }
            }
        }
        Scene { spec: *self, image, labels, stop: self.stop() }
    }
}

impl Scene {
    /// Per pixel `[H, W]`: in the lamp's lit lens (labelled `lamp`, inside the housing).
    pub fn lens(&self) -> Vec<bool> {
        (0..HEIGHT * WIDTH)
            .map(|p| {
                let (d, lens) = self.spec.lamp_distance(p / WIDTH, p % WIDTH);
                self.labels[p] as usize == LAMP && d <= lens
            })
            .collect()
    }
}

/// The scene of `seed`.
pub fn scene(seed: u64) -> Scene {
    SceneSpec::sample(seed).render()
}

/// The decision read off a rendered image: the mean colour of the pixels labelled `lamp`
/// is red. Equal to [`Scene::stop`] by construction (tested), which shows the decision
/// depends on the causal region's pixels only.
pub fn stop_from_pixels(image: &[f32], labels: &[u8]) -> Option<bool> {
    let n = labels.iter().filter(|&&k| k as usize == LAMP).count();
    if n == 0 {
        return None;
    }
    let mut mean = [0f32; 3];
    for (i, _) in labels.iter().enumerate().filter(|(_, k)| **k as usize == LAMP) {
        for (c, m) in mean.iter_mut().enumerate() {
            *m += (image[c * HEIGHT * WIDTH + i] + 1.0) / 2.0 / n as f32;
        }
    }
    Some(is_red(mean))
}

/// Seeds of the training scenes: `0..n`. Held-out scenes use [`HELD_OUT_SEED`] onwards.
pub const HELD_OUT_SEED: u64 = 1 << 40;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_reads_the_lamp_pixels_only() {
        let mut counts = [0usize; 2];
        for seed in 0..400 {
            let s = scene(seed);
            assert_eq!(stop_from_pixels(&s.image, &s.labels), Some(s.stop), "seed {seed}");
            counts[s.stop as usize] += 1;
            assert!(s.labels.iter().filter(|&&k| k as usize == LAMP).count() >= 100, "seed {seed}: lamp too small");
            for k in 0..5u8 {
                assert!(s.labels.contains(&k), "seed {seed}: region {} absent", REGIONS[k as usize]);
            }
        }
        // Balanced classes.
        assert!(counts[0] > 150 && counts[1] > 150, "{counts:?}");
    }

    #[test]
    fn the_lamp_is_a_lit_lens_in_a_grey_housing() {
        for seed in 0..100 {
            let spec = SceneSpec::sample(seed);
            let s = spec.render();
            let lens = s.lens();
            let lit = lens.iter().filter(|&&v| v).count();
            assert!(lit >= 40, "seed {seed}: lens of {lit} pixels");
            let px = HEIGHT * WIDTH;
            let mut housing = 0;
            for (p, &in_lens) in lens.iter().enumerate() {
                let rgb = [0, 1, 2].map(|c| (s.image[c * px + p] + 1.0) / 2.0);
                if in_lens {
                    assert_eq!(s.labels[p] as usize, LAMP);
                    // The lens wears the lamp's colour, shaded: every lens pixel decides alike.
                    assert_eq!(is_red(rgb), spec.stop(), "seed {seed} pixel {p}: {rgb:?}");
                } else if s.labels[p] as usize == LAMP {
                    housing += 1;
                    assert!(rgb.iter().all(|v| (v - HOUSING_GREY).abs() < 1e-6), "seed {seed} pixel {p}: {rgb:?}");
                }
            }
            assert!(housing >= 30, "seed {seed}: housing of {housing} pixels");
            // The lens's mean colour alone decides as the rule does.
            let mut mean = [0f32; 3];
            for p in (0..px).filter(|&p| lens[p]) {
                for (c, m) in mean.iter_mut().enumerate() {
                    *m += (s.image[c * px + p] + 1.0) / 2.0 / lit as f32;
                }
            }
            assert_eq!(is_red(mean), s.stop, "seed {seed}");
        }
    }

    #[test]
    fn non_causal_regions_never_change_the_decision() {
        // Swap every non-causal appearance and the whole layout between scenes: the decision
        // follows the lamp alone. Swap the lamp: it follows the lamp.
        for seed in 0..200 {
            let (a, b) = (SceneSpec::sample(seed), SceneSpec::sample(seed + 1000));
            let mut mixed = b;
            mixed.appearance[LAMP] = a.appearance[LAMP];
            let r = mixed.render();
            assert_eq!(r.stop, a.stop());
            assert_eq!(stop_from_pixels(&r.image, &r.labels), Some(a.stop()));
            let mut flipped = a;
            flipped.appearance[LAMP] = SceneSpec::lamp_appearance(&mut StdRng::seed_from_u64(seed), !a.stop());
            assert_eq!(flipped.render().stop, !a.stop());
        }
    }

    #[test]
    fn redness_is_positive_exactly_for_red_hues() {
        // The RGB margin agrees with the hue rule (within 40 degrees of red) for every
        // colour that is not a grey, away from the boundary itself.
        let mut rng = StdRng::seed_from_u64(11);
        for i in 0..20000 {
            let h = if i < 3600 { i as f32 / 10.0 } else { rng.random_range(0.0..360.0) };
            let (s, v) = if i < 3600 { (0.8, 0.9) } else { (rng.random_range(0.05..1.0), rng.random_range(0.05..1.0)) };
            let c = hsv(h, s, v);
            let d = hue(c).min(360.0 - hue(c));
            if (d - 40.0).abs() < 0.05 {
                continue;
            }
            assert_eq!(redness(c) > 0.0, d < 40.0, "hue {h} s {s} v {v}: redness {}", redness(c));
            assert_eq!(is_red(c), d < 40.0);
        }
        assert!(!is_red([0.5, 0.5, 0.5]) && redness([0.5, 0.5, 0.5]) == 0.0, "greys are not red");
        // Monotone toward red: more red, less green, more red.
        assert!(redness(hsv(0.0, 1.0, 1.0)) > redness(hsv(30.0, 1.0, 1.0)));
        assert!(redness(hsv(60.0, 1.0, 1.0)) > redness(hsv(120.0, 1.0, 1.0)));
        assert!(redness([0.6, 0.2, 0.2]) > redness([0.5, 0.2, 0.2]));
        assert!(redness([0.5, 0.2, 0.2]) > redness([0.5, 0.3, 0.2]));
    }

    #[test]
    fn layouts_are_drawn_on_two_pixel_blocks() {
        for seed in 0..50 {
            let l = SceneSpec::sample(seed).labels();
            for y in 0..HEIGHT {
                for x in 0..WIDTH {
                    assert_eq!(l[y * WIDTH + x], l[(y & !1) * WIDTH + (x & !1)], "seed {seed} ({y}, {x})");
                }
            }
        }
    }

    #[test]
    fn scenes_are_deterministic_and_vary() {
        assert_eq!(scene(7), scene(7));
        assert_ne!(scene(7).image, scene(8).image);
        let s = scene(3);
        assert!(s.image.iter().all(|v| (-1.0..=1.0).contains(v)));
        let spread = s.image.iter().fold(f32::MIN, |m, v| m.max(*v)) - s.image.iter().fold(f32::MAX, |m, v| m.min(*v));
        assert!(spread > 0.3, "{spread}");
    }
}
