"""Times the published STEEX optimisation loop (PyTorch) on this machine's CPU, with random
weights, and prints one JSON line like `cargo bench --bench explain_step`.

    tools/.venv/bin/python tools/bench_reference.py PRESET BATCH STEPS

The loop is the published one (`generate_counterfactuals.py`) on `steex_reference.py`'s
modules, which compute exactly what the published modules compute, including what makes it
slow: the per-region Python loops of ACE and the encoder, the SPADE branch and the 512-channel
style convolutions on every step, and weight gradients for the frozen generator and decision
model (the published code never turns `requires_grad` off).
"""
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from steex_reference import SEANGenerator, DecisionDensenetModel, one_hot  # noqa: E402

PRESETS = {"celeba": (19, 128, 1.0, 3), "celebamhq": (19, 256, 1.0, 3), "bdd": (20, 512, 2.0, 4)}


def main():
    preset, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    L, width, aspect, K = PRESETS[preset]
    torch.manual_seed(0)
    g = SEANGenerator(L, 64, 512, width, aspect).eval()
    g.set_noise("reference")
    dm = DecisionDensenetModel(K).eval()
    h, w = round(width / aspect), width
    labels = (torch.arange(h) // ((h + L - 1) // L)).view(1, h, 1).expand(batch, h, w)
    seg = one_hot(labels, L)
    image = torch.rand(batch, 3, h, w) * 2 - 1
    attr, lr, lam = 0, 0.01, 0.3
    initial = torch.sigmoid(dm(image))
    target = (initial[:, attr] < 0.5).double()
    style = g.encode(image, seg).detach()
    z = style.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        opt.zero_grad()
        logits = dm(g.generate(seg, z))
        s = torch.sigmoid(logits[:, attr])
        flip = -(1 - target) * torch.log(1 - s) - target * torch.log(s)
        prox = lam * torch.sum(torch.square(torch.norm(z - style, dim=2)), axis=1)
        (flip + prox).sum().backward()
        opt.step()
        times.append(time.perf_counter() - t)
    steady = times[1:] if len(times) > 1 else times
    ms = 1000 * sum(steady) / len(steady)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30
    print(json.dumps({"impl": "pytorch-reference", "preset": preset, "batch": batch,
                      "path": "published", "steps": steps, "ms_per_step": round(ms, 1),
                      "ms_per_step_per_image": round(ms / batch, 1),
                      "peak_rss_gib": round(rss, 3), "device": "cpu",
                      "threads": torch.get_num_threads(), "torch": torch.__version__}),
          flush=True)


if __name__ == "__main__":
    main()
