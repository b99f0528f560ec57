"""Writes the parity fixtures of one SEAN GAN iteration (`crates/steex-gan`, the generator
step and the discriminator step after it) from PyTorch.

    /path/to/python tools/make_gan_step_fixtures.py [--per-image-noise]

The modules: `tools/steex_reference.py`'s `SEANGenerator` (the published generator with its
style encoder, spectral norm on every residual block's `conv_0`, `conv_1`, `conv_s` as SEAN's
`norm_G spectralspadesyncbatch3x3` puts it, ACE's `param_free_norm` a `BatchNorm2d(affine=
False)`), and `tools/make_gan_fixtures.py`'s published discriminator, hinge loss, feature
matching and VGG loss. Reduced sizes: 4 labels, `ngf` 1, style length 8, SPADE width 8,
encoder width 4, images 64x64, batch 2; the discriminator `ndf` 4, `n_layers_D` 3 (the
default), `num_D` 2; the VGG19 is `tests/fixtures/gan/vgg.safetensors` (1/16 width). The
ACE noise is steex's `seed:9` stream (SEAN draws fresh `randn` on every forward, which no
other implementation can replay): `examples/noise_stream.rs` writes it (the one part Rust
makes; not kept), the reference replays it in both generator forwards, every image of the
batch getting the same maps, as steex's seeded noise does; `noise_var` is non-zero.

One iteration of `Pix2PixTrainer` with TTUR (lr 0.0002: G at lr / 2, D at 2 lr, betas
(0, 0.9)), both networks in `train()`, computed in float64 from the float32 values stored:

1. `run_generator_one_step`: `fake = netG(semantics, real)` (batch statistics, one power
   iteration per spectral norm, running statistics updated), `GAN + GAN_Feat + VGG` on
   `discriminate(semantics, fake, real)` (D's power iterations run too), backward, Adam on
   all of netG's parameters (the encoder included);
2. `run_discriminator_one_step`: `fake2 = netG(semantics, real)` again under `no_grad` (in
   train mode: the updated weights, another power iteration, another running-statistics
   update), then `D_Fake + D_real` on `discriminate(semantics, fake2, real)`, Adam on netD.

Files under `tests/fixtures/gan_step/`:

- `g_init.safetensors`: the generator's tensors in the training layout (published names;
  `weight_orig`, `weight_u`, `weight_v` of the spectral norms; ACE's running statistics;
  the checkpoint's unused tensors left out);
- `d_init.safetensors`: the discriminator's state dict;
- `inputs.safetensors`: `real` `[2, 3, 64, 64]` in (-1, 1), `labels` `[2, 64, 64]` (label
  ids as floats);
- `step.safetensors`: `g_gan`, `g_feat`, `g_vgg`, `g_total`, `fake`, `fake2`, `d_fake`,
  `d_real`; per generator parameter `g.grad.<key>` and `g.delta.<key>` (Adam's change, in
  float64), per generator buffer `g.after.<key>`; likewise `d.grad.<key>`, `d.delta.<key>`,
  `d.after.<key>` for the discriminator.
- `per_image_noise.safetensors`: `fake`, the generator of `g_init` in `train()` (as the
  step's first forward: batch statistics, one power iteration) under `no_grad` (in eval mode
  this reduced generator saturates) on `inputs` with the `seed:9` stream replayed one map per
  image (`NoiseReplay(per_image=True)`, steex's `NoiseMode::SeededPerImage`, what `steex
  train generator` draws): the two images of the batch get different maps.
  `--per-image-noise` writes this file alone, from the stored ones.
"""
import os
import subprocess
import sys
import tempfile

import torch
import torchvision
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
import make_gan_fixtures as mg  # noqa: E402
import steex_reference as ref  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gan_step")
GAN_ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gan")

LABELS, NGF, STYLE, CROP, SPADE_HIDDEN, ENCODER_NGF = 4, 1, 8, 64, 8, 4
LR = 0.0002
NOISE_SEED = 9

# The reference classes take the published widths (SPADE 128, encoder 32) as defaults;
# the reduced generator uses smaller ones.
ref.Spade.__init__.__defaults__ = (SPADE_HIDDEN,)
ref.Zencoder.__init__.__defaults__ = (ENCODER_NGF, 2)


class Opt(mg.Opt):
    label_nc = LABELS
    ndf = 4
    n_layers_D = 3
    num_D = 2


def unused(name):
    """`SeanConfig::is_unused`: counters, the SPADE branch's batch norm, up_3's blending."""
    return (name.endswith("num_batches_tracked") or ".Spade.param_free_norm." in name
            or (name.startswith("up_3.") and ".blending_" in name))


def is_buffer(name):
    return any(name.endswith(s) for s in (".running_mean", ".running_var", ".weight_u", ".weight_v"))


def f32(t):
    return t.detach().float().contiguous()


def rust_noise_stream(seed, n):
    """The first n values of steex's `seed:SEED` noise stream (`examples/noise_stream.rs`)."""
    import numpy as np
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "noise.npy")
        subprocess.run(["cargo", "run", "--release", "--quiet", "--example", "noise_stream", "--",
                        str(seed), str(n), path], cwd=repo, check=True)
        return np.load(path)


def noise_values_per_forward(g, seg, image, per_image=False):
    """How many stream values one generator forward takes."""
    import numpy as np
    replay = ref.NoiseReplay(np.zeros(10**7, dtype=np.float32), per_image)
    g.set_noise(replay)
    with torch.no_grad():
        g(seg, image)
    return replay.used


def main():
    os.makedirs(ROOT, exist_ok=True)
    torch.manual_seed(3)
    g = ref.SEANGenerator(label_nc=LABELS, ngf=NGF, style_length=STYLE, crop_size=CROP)
    ref.randomize_sean(g, seed=4)
    opt = Opt()
    netD = mg.MultiscaleDiscriminator(opt)
    with torch.no_grad():
        for i in range(opt.num_D):
            getattr(netD, f"discriminator_{i}")._modules[f"model{opt.n_layers_D}"][0].weight.mul_(4.0)
    g_init = {k: f32(v) for k, v in g.state_dict().items() if not unused(k)}
    d_init = {k: f32(v) for k, v in netD.state_dict().items()}

    gen = torch.Generator().manual_seed(5)
    b = 2
    real = torch.tanh(torch.randn(b, 3, CROP, CROP, generator=gen) * 1.5)
    blocks = torch.randint(0, LABELS, (b, CROP // 4, CROP // 4), generator=gen)
    labels = blocks.repeat_interleave(4, 1).repeat_interleave(4, 2)
    save_file(g_init, os.path.join(ROOT, "g_init.safetensors"))
    save_file(d_init, os.path.join(ROOT, "d_init.safetensors"))
    save_file({"real": real, "labels": labels.float()}, os.path.join(ROOT, "inputs.safetensors"))

    # float64 from the stored float32 values.
    g = g.double().train()
    netD = netD.double().train()
    vgg_state = load_file(os.path.join(GAN_ROOT, "vgg.safetensors"))
    cfg = [c if c == "M" else c // 16 for c in torchvision.models.vgg.cfgs["E"]]
    features = torchvision.models.vgg.make_layers(cfg, batch_norm=False)
    features.load_state_dict({k[len("features."):]: v for k, v in vgg_state.items()})
    vgg_loss = mg.VGGLoss(mg.VGG19(features.double()))
    gan = mg.GANLoss()
    real = real.double()
    seg = ref.one_hot(labels, LABELS).double()
    g.eval()
    n = noise_values_per_forward(g, seg, real)
    g.train()
    g.set_noise(ref.NoiseReplay(rust_noise_stream(NOISE_SEED, n)))

    g_names = {id(p): n for n, p in g.named_parameters()}
    d_names = {id(p): n for n, p in netD.named_parameters()}
    optimizer_G = torch.optim.Adam(list(g.parameters()), lr=LR / 2, betas=(0.0, 0.9))
    optimizer_D = torch.optim.Adam(list(netD.parameters()), lr=LR * 2, betas=(0.0, 0.9))
    out = {}

    # run_generator_one_step
    optimizer_G.zero_grad()
    fake = g(seg, real)
    g_gan, g_feat, g_vgg, _, _, _, _ = mg.generator_losses(opt, netD, vgg_loss, gan, seg, fake, real)
    total = g_gan + g_feat + g_vgg
    total.mean().backward()
    prev = {n: p.detach().clone() for n, p in g.named_parameters()}
    for n, p in g.named_parameters():
        if p.grad is not None and not unused(n):
            out[f"g.grad.{n}"] = f32(p.grad)
    optimizer_G.step()
    for n, p in g.named_parameters():
        if p.grad is not None and not unused(n):
            out[f"g.delta.{n}"] = f32(p.detach() - prev[n])
    out["g_gan"] = f32(g_gan.reshape(1))
    out["g_feat"] = f32(g_feat.reshape(1))
    out["g_vgg"] = f32(g_vgg.reshape(1))
    out["g_total"] = f32(total.reshape(1))
    out["fake"] = f32(fake)

    # run_discriminator_one_step
    optimizer_D.zero_grad()
    with torch.no_grad():
        fake2 = g(seg, real)
    fake2 = fake2.detach().requires_grad_()
    pred_fake, pred_real, _ = mg.discriminate(netD, seg, fake2, real)
    d_fake = gan(pred_fake, False, for_discriminator=True)
    d_real = gan(pred_real, True, for_discriminator=True)
    (d_fake + d_real).mean().backward()
    prev = {n: p.detach().clone() for n, p in netD.named_parameters()}
    for n, p in netD.named_parameters():
        out[f"d.grad.{n}"] = f32(p.grad)
    optimizer_D.step()
    for n, p in netD.named_parameters():
        out[f"d.delta.{n}"] = f32(p.detach() - prev[n])
    out["fake2"] = f32(fake2)
    out["d_fake"] = f32(d_fake.reshape(1))
    out["d_real"] = f32(d_real.reshape(1))
    for k, v in g.state_dict().items():
        if is_buffer(k) and not unused(k):
            out[f"g.after.{k}"] = f32(v)
    for k, v in netD.state_dict().items():
        if is_buffer(k):
            out[f"d.after.{k}"] = f32(v)
    save_file(out, os.path.join(ROOT, "step.safetensors"))

    total_bytes = sum(os.path.getsize(os.path.join(ROOT, f)) for f in os.listdir(ROOT))
    print(f"wrote {ROOT}: {total_bytes} bytes; {len(g_init)} generator tensors, "
          f"{sum(v.numel() for v in g_init.values())} values")
    print("g_gan", float(g_gan.detach()), "g_feat", float(g_feat.detach()), "g_vgg", float(g_vgg.detach()))
    print("d_fake", float(d_fake.detach()), "d_real", float(d_real.detach()))
    no_grad = [n for n, p in g.named_parameters() if p.grad is None and not unused(n)]
    print("generator parameters without a gradient:", no_grad)


def per_image_noise():
    g = ref.SEANGenerator(label_nc=LABELS, ngf=NGF, style_length=STYLE, crop_size=CROP)
    missing, extra = g.load_state_dict(load_file(os.path.join(ROOT, "g_init.safetensors")), strict=False)
    assert not extra and all(unused(k) for k in missing), (missing, extra)
    inputs = load_file(os.path.join(ROOT, "inputs.safetensors"))
    g = g.double().train()
    real = inputs["real"].double()
    seg = ref.one_hot(inputs["labels"].long(), LABELS).double()
    g.eval()
    n = noise_values_per_forward(g, seg, real, per_image=True)
    g.train()
    g.set_noise(ref.NoiseReplay(rust_noise_stream(NOISE_SEED, n), per_image=True))
    with torch.no_grad():
        fake = g(seg, real)
    save_file({"fake": f32(fake)}, os.path.join(ROOT, "per_image_noise.safetensors"))
    print(f"per-image noise: {n} stream values, fake mean |x| {float(fake.abs().mean()):.4f}, "
          f"share of |x| > 0.99 {float((fake.abs() > 0.99).double().mean()):.4f}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--per-image-noise"]:
        main()
    per_image_noise()
