"""Training throughput of `steex train generator` against the published SEAN GAN iteration
in PyTorch on this machine, in one run: images per second of one iteration of
`Pix2PixTrainer` (the generator step, then the discriminator step).

    tools/.venv/bin/python tools/bench_gan.py [--sizes 64,256] [--batch 1] [--steps 2] \
        [--labels 19] [--ngf 64] [--vgg both|random|none] [--repeat N]

The configuration is the one the CelebAMask-HQ preset trains at each size: 19 labels, SEAN's
`ngf` 64, style length 512, ACE's SPADE width 128, encoder width 32, the multiscale
discriminator `ndf` 64, `n_layers_D` 3, `num_D` 2 (`--labels`, `--ngf` reduce it). Both
sides: spectral norm on the generator's residual convolutions and the discriminator's,
ACE's batch norms in train mode, hinge loss + feature matching (x10) + VGG loss (x10), Adam
with TTUR (G and its encoder at lr / 2, D at 2 lr, betas (0, 0.9)), the second generator
forward of the discriminator step under no_grad. The VGG19 is torchvision's architecture
with *random* weights (its speed does not depend on them): `--vgg random` uses it on both
sides (ours reads the same weights through `--vgg`), `--vgg none` trains both without the
VGG loss (`--no-vgg`, `no_vgg_loss`), `--vgg both` (the default) measures both settings.

Ours: `(steps + 1) * batch` random images with random 19-label masks (in blocks of 8 pixels)
in a temporary folder; `steex train generator` (release build, `--device cpu`) runs one
epoch with `--log` and is stopped once every step is logged (the final checkpoint of some
GB is not waited for); the log's `images_per_s` of every step but the first is averaged
(the step only: images are read by worker threads ahead of it). PyTorch: the reference
modules of `tools/steex_reference.py` (SEAN's generator and encoder, ACE's noise drawn
fresh as published) and `tools/make_gan_fixtures.py` (the published discriminator, losses),
the same batch, the first iteration dropped. Prints one JSON line per side and setting, the
ratio, and the CPU model with its widest SIMD level.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
import make_gan_fixtures as mg  # noqa: E402
import steex_reference as ref  # noqa: E402


def cpu():
    info = open("/proc/cpuinfo").read()
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    flags = set(next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), []))
    simd = next((s for s in ("avx512f", "avx2", "avx", "sse4_2") if s in flags), "none")
    return {"cpu": model, "simd": simd, "threads": len(os.sched_getaffinity(0))}


def vgg_features(seed=0):
    torch.manual_seed(seed)
    return torchvision.models.vgg19(weights=None).features


def torch_rate(size, batch, steps, labels, ngf, use_vgg):
    class Opt(mg.Opt):
        label_nc = labels
        ndf = 64
        n_layers_D = 3
        num_D = 2
    opt = Opt()
    torch.manual_seed(0)
    g = ref.SEANGenerator(label_nc=labels, ngf=ngf, style_length=512, crop_size=size).train()
    d = mg.MultiscaleDiscriminator(opt).train()
    vgg = mg.VGGLoss(mg.VGG19(vgg_features())) if use_vgg else None
    gan = mg.GANLoss()
    opt_g = torch.optim.Adam(g.parameters(), lr=0.0002 / 2, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=0.0002 * 2, betas=(0.0, 0.9))
    real = torch.rand(batch, 3, size, size) * 2 - 1
    blocks = torch.randint(0, labels, (batch, size // 8, size // 8))
    seg = ref.one_hot(blocks.repeat_interleave(8, 1).repeat_interleave(8, 2), labels)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        # run_generator_one_step
        opt_g.zero_grad()
        fake = g(seg, real)
        pred_fake, pred_real, _ = mg.discriminate(d, seg, fake, real)
        g_gan = gan(pred_fake, True, for_discriminator=False)
        feat = torch.zeros(1)
        for i in range(len(pred_fake)):
            for j in range(len(pred_fake[i]) - 1):
                feat = feat + torch.nn.functional.l1_loss(pred_fake[i][j], pred_real[i][j].detach()) * 10.0 / 2
        total = g_gan + feat
        if vgg is not None:
            total = total + vgg(fake, real)[0] * 10.0
        total.mean().backward()
        opt_g.step()
        # run_discriminator_one_step
        opt_d.zero_grad()
        with torch.no_grad():
            fake2 = g(seg, real).detach()
        pred_fake, pred_real, _ = mg.discriminate(d, seg, fake2, real)
        (gan(pred_fake, False, for_discriminator=True) + gan(pred_real, True, for_discriminator=True)).mean().backward()
        opt_d.step()
        times.append(time.perf_counter() - t0)
    return batch * steps / sum(times[1:])


def our_rate(size, batch, steps, labels, ngf, use_vgg):
    steex = os.path.join(ROOT, "target", "release", "steex")
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(f"{d}/img")
        os.makedirs(f"{d}/masks")
        rng = np.random.default_rng(0)
        for i in range((steps + 1) * batch):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(f"{d}/img/{i:05}.png")
            blocks = rng.integers(0, labels, (size // 8, size // 8), dtype=np.uint8)
            Image.fromarray(blocks.repeat(8, 0).repeat(8, 1)).save(f"{d}/masks/{i:05}.png")
        if use_vgg:
            save_file({f"features.{k}": v.contiguous() for k, v in vgg_features().state_dict().items()},
                      f"{d}/vgg.safetensors")
            vgg = ["--vgg", f"{d}/vgg.safetensors"]
        else:
            vgg = ["--no-vgg"]
        log = f"{d}/log.jsonl"
        cmd = [steex, "--device", "cpu", "train", "generator", "--images", f"{d}/img", "--masks", f"{d}/masks",
               "--labels", str(labels), "--size", str(size), "--batch", str(batch), "--ngf", str(ngf),
               "--niter", "1", "--niter-decay", "0", "--out", f"{d}/g.safetensors", "--log", log, *vgg]
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        rates = []
        while True:
            lines = open(log).read().splitlines() if os.path.exists(log) else []
            rates = [json.loads(l)["images_per_s"] for l in lines if '"event":"step"' in l.replace(" ", "")]
            if len(rates) >= steps + 1 or proc.poll() is not None:
                break
            time.sleep(0.5)
        proc.kill()
        proc.wait()
        if len(rates) < steps + 1:
            sys.exit(f"steex train generator stopped after {len(rates)} steps (exit {proc.returncode})")
    return sum(rates[1:]) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2, help="timed iterations (one more is run first, dropped)")
    ap.add_argument("--labels", type=int, default=19)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--vgg", choices=["both", "random", "none"], default="both")
    ap.add_argument("--repeat", type=int, default=1, help="alternate the two sides N times, report medians")
    ap.add_argument("--no-build", action="store_true", help="use target/release/steex as it is")
    a = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "steex"], cwd=ROOT, check=True)
    print(json.dumps({**cpu(), "torch": torch.__version__}), flush=True)
    settings = {"both": [True, False], "random": [True], "none": [False]}[a.vgg]
    for size in [int(s) for s in a.sizes.split(",")]:
        for use_vgg in settings:
            runs = {"steex": [], "pytorch": []}
            for _ in range(a.repeat):
                runs["steex"].append(our_rate(size, a.batch, a.steps, a.labels, a.ngf, use_vgg))
                runs["pytorch"].append(torch_rate(size, a.batch, a.steps, a.labels, a.ngf, use_vgg))
            med = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
            for side, r in med.items():
                print(json.dumps({"side": side, "size": size, "batch": a.batch, "labels": a.labels, "ngf": a.ngf,
                                  "vgg": "random" if use_vgg else "none", "images_per_s": round(r, 4),
                                  "runs": [round(x, 4) for x in runs[side]]}), flush=True)
            print(f"{size}x{size}, vgg {'random' if use_vgg else 'none'}: ours / PyTorch "
                  f"{med['steex'] / med['pytorch']:.2f}", flush=True)


if __name__ == "__main__":
    main()
