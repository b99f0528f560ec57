"""Checks the reference modules of `steex_reference.py` against fixtures written by the
published STEEX code (a folder like the team's `shared/fixtures/tiny-face`).

    tools/.venv/bin/python tools/check_reference.py PATH/TO/tiny-face

Prints the max abs errors of the encoder codes, the reconstruction, the generator on custom
codes (noise off) and the decision logits; exits non-zero if any exceeds 1e-5 relative.
"""
import json
import sys

import numpy as np
import torch
from PIL import Image

from steex_reference import (SEANGenerator, DecisionDensenetModel, DecisionResnetModel,
                             one_hot)

torch.use_deterministic_algorithms(True)
d = sys.argv[1]
meta = json.load(open(f"{d}/meta.json"))
sd = torch.load(f"{d}/latest_net_G.pth", map_location="cpu", weights_only=True)
S = sd["Zencoder.model.14.weight"].shape[0]
L = sd["fc.weight"].shape[1]
ngf = sd["conv_img.weight"].shape[1]
g = SEANGenerator(L, ngf, S, meta["width"], meta["width"] / meta["height"])
missing = g.load_state_dict(sd, strict=True)
g.eval()
g.set_noise("off")
image = torch.from_numpy(np.load(f"{d}/image.npy"))
mask = torch.from_numpy(np.array(Image.open(f"{d}/mask.png"))).unsqueeze(0)
seg = one_hot(mask, L)
fails = 0


def report(name, got, want):
    global fails
    want = np.asarray(want, dtype=np.float64)
    err = np.abs(np.asarray(got, dtype=np.float64).reshape(want.shape) - want).max()
    rel = err / max(1.0, np.abs(want).max())
    ok = rel <= 1e-5
    fails += not ok
    print(f"{name}: max abs err {err:.3g} (rel {rel:.3g}) {'ok' if ok else 'FAIL'}")


with torch.no_grad():
    codes = g.encode(image, seg)
    report("codes", codes, np.load(f"{d}/codes.npy"))
    report("recon_nonoise", g.generate(seg, codes), np.load(f"{d}/recon_nonoise.npy"))
    z = torch.from_numpy(np.load(f"{d}/z_custom.npy"))
    report("gen_custom_nonoise", g.generate(seg, z), np.load(f"{d}/gen_custom_nonoise.npy"))
    g.set_noise("reference")
    a, b = g.generate(seg, z), g.generate(seg, z)
    print(f"noisy pair mean abs diff {float((a - b).abs().mean()):.4f} "
          f"(published: {meta['noisy_pair_mean_abs_diff']:.4f})")

    for name, cls in [("densenet", DecisionDensenetModel), ("resnet18", DecisionResnetModel)]:
        ck = torch.load(f"{d}/{name}_checkpoint.tar", map_location="cpu", weights_only=True)
        m = cls(num_classes=3)
        m.load_state_dict(ck["model_state_dict"], strict=True)
        m.eval()
        report(f"{name} logits", m(image), np.load(f"{d}/{name}_logits.npy"))

# The published loop, on the published fixture's conditioned DenseNet.
from steex_reference import published_loop  # noqa: E402
ck = torch.load(f"{d}/densenet_checkpoint.tar", map_location="cpu", weights_only=True)
dm = DecisionDensenetModel(num_classes=3)
dm.load_state_dict(ck["model_state_dict"])
dm.eval()
for p in list(dm.parameters()) + list(g.parameters()):
    p.requires_grad_(False)
g.set_noise("off")
codes = np.load(f"{d}/codes.npy").astype(np.float64)
for tag in ["general", "targeted"]:
    m = meta[f"cf_{tag}"]
    z, probs, flip, prox, _ = published_loop(g, dm, image, seg, m["target_attr"], m["steps"], m["lr"],
                                             m["lambda_prox"], tuple(m["regions"]))
    zr = np.load(f"{d}/cf_{tag}_z.npy").astype(np.float64).reshape(1, -1, codes.shape[-1])[:, :L]
    zz = z.numpy().astype(np.float64)
    rel = np.linalg.norm(zz - zr) / np.linalg.norm(zr - codes)
    a = m["target_attr"]
    lg = lambda q: np.log(q / (1 - q))
    print(f"loop {tag}: z err / move {rel:.3g}, target logit err "
          f"{abs(lg(float(probs[0, a])) - lg(m['final_probs'][a])):.3g}, flip {float(flip[0]):.6g} "
          f"(published {m['flip']:.6g}), prox {float(prox[0]):.6g} (published {m['prox']:.6g})")
    fails += rel > 0.05
sys.exit(1 if fails else 0)
