"""Times the published STEEX optimisation loop (PyTorch) on this machine's CPU (or a CUDA GPU
with `--device cuda`), with random weights, and prints one JSON line like
`cargo bench --bench explain_step`.

    tools/.venv/bin/python tools/bench_reference.py PRESET BATCH STEPS [--device cpu|cuda]

On CUDA each step ends with `torch.cuda.synchronize()` (the published loop reads nothing back
between steps) and `device_peak_gib` is `torch.cuda.max_memory_allocated`.

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


def device_arg(argv):
    """`--device NAME` (or `--device=NAME`) out of argv: (device, the other arguments)."""
    rest, device, it = [], "cpu", iter(argv)
    for a in it:
        if a == "--device":
            device = next(it, None)
            if device is None:
                sys.exit("--device needs a value: cpu or cuda")
        elif a.startswith("--device="):
            device = a.split("=", 1)[1]
        else:
            rest.append(a)
    if device not in ("cpu", "cuda"):
        sys.exit(f"--device {device}: the reference runs on cpu or cuda")
    return device, rest


def main():
    device, args = device_arg(sys.argv[1:])
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device cuda: torch {torch.__version__} has no CUDA device here")
    preset, batch, steps = args[0], int(args[1]), int(args[2])
    L, width, aspect, K = PRESETS[preset]
    torch.manual_seed(0)
    g = SEANGenerator(L, 64, 512, width, aspect).eval().to(device)
    g.set_noise("reference")
    dm = DecisionDensenetModel(K).eval().to(device)
    h, w = round(width / aspect), width
    labels = (torch.arange(h) // ((h + L - 1) // L)).view(1, h, 1).expand(batch, h, w)
    seg = one_hot(labels, L).to(device)
    image = (torch.rand(batch, 3, h, w) * 2 - 1).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
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
        sync()
        times.append(time.perf_counter() - t)
    # The first step also warms up; the median of the others (as our bench reports), which a
    # stray interruption of the machine does not move.
    steady = sorted(times[1:] if len(times) > 1 else times)
    ms = 1000 * (steady[(len(steady) - 1) // 2] + steady[len(steady) // 2]) / 2
    mean = 1000 * sum(steady) / len(steady)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30
    print(json.dumps({"impl": "pytorch-reference", "preset": preset, "batch": batch,
                      "path": "published", "steps": steps, "ms_per_step": round(ms, 1),
                      "ms_per_step_mean": round(mean, 1), "step_ms": [round(1000 * t, 1) for t in times],
                      "ms_per_step_per_image": round(ms / batch, 1),
                      "peak_rss_gib": round(rss, 3), "device": device,
                      "device_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)
                      if device == "cuda" else None,
                      "adapter": torch.cuda.get_device_name() if device == "cuda" else None,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}),
          flush=True)


if __name__ == "__main__":
    main()
