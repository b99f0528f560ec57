"""Training throughput of `steex train classifier` against PyTorch on this machine, in one
run: images per second of one training step (forward, BCE, backward, Adam) of the full-size
DenseNet121 at 128x128, batch 32 (the published CelebA recipe), batch norm in train mode.

    tools/.venv/bin/python tools/bench_train.py [--size 128] [--batch 32] [--steps 3] [--arch densenet121]

Ours: a dataset of `(steps + 1) * batch` random PNGs is written to a temporary folder and
`steex train classifier` (release build, `--device cpu`) trains one epoch on it with
`--log`; the log's `images_per_s` of every step but the first (warm-up) is averaged (the
step only: the images are read by worker threads ahead of it). PyTorch: the same model
(torchvision's DenseNet121 in the published `DecisionDensenetModel` wrapper), the same
batch size, `torch.optim.Adam`, the first step dropped. Prints one JSON line per side and
the ratio.
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
from PIL import Image

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from steex_reference import DecisionDensenetModel, DecisionResnetModel  # noqa: E402


def torch_rate(arch, size, batch, steps):
    model = DecisionDensenetModel(3) if arch == "densenet121" else DecisionResnetModel(3, depth=int(arch[6:]))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    y = (torch.rand(batch, 3) > 0.5).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return batch * steps / sum(times[1:])


def our_rate(arch, size, batch, steps):
    subprocess.run(["cargo", "build", "--release", "--bin", "steex"], cwd=ROOT, check=True)
    steex = os.path.join(ROOT, "target", "release", "steex")
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(f"{d}/img")
        rng = np.random.default_rng(0)
        with open(f"{d}/labels.csv", "w") as f:
            f.write("file,a,b,c\n")
            for i in range((steps + 1) * batch):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(f"{d}/img/{i:05}.png")
                f.write(f"{i:05}.png,{i % 2},{i // 2 % 2},{i // 4 % 2}\n")
        subprocess.run([steex, "--device", "cpu", "train", "classifier", "--images", f"{d}/img", "--labels",
                        f"{d}/labels.csv", "--attributes", "a,b,c", "--arch", arch, "--size", str(size),
                        "--batch", str(batch), "--epochs", "1", "--out", f"{d}/c.safetensors",
                        "--log", f"{d}/log.jsonl"], check=True)
        steps_logged = [json.loads(l) for l in open(f"{d}/log.jsonl") if '"step"' in l]
        rates = [s["images_per_s"] for s in steps_logged if s["event"] == "step"][1:]
    return sum(rates) / len(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="densenet121")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    ours = our_rate(a.arch, a.size, a.batch, a.steps)
    ref = torch_rate(a.arch, a.size, a.batch, a.steps)
    for side, r in [("steex", ours), ("pytorch", ref)]:
        print(json.dumps({"side": side, "arch": a.arch, "size": a.size, "batch": a.batch, "images_per_s": round(r, 2)}))
    print(f"ours / PyTorch: {ours / ref:.2f}")


if __name__ == "__main__":
    main()
