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
sys.exit(1 if fails else 0)
