"""Training throughput of `steex train classifier` against PyTorch on this machine, in one
run: images per second of one training step (forward, loss, backward, Adam), batch norm in
train mode, of the full-size DenseNet121 at 128x128, batch 32 (the published CelebA recipe;
the default), or with `--arch deeplabv3_resnet101 --size 256 --batch 8` of the segmenter
(cross-entropy, label 0 ignored, 19 classes).

    tools/.venv/bin/python tools/bench_train.py [--size 128] [--batch 32] [--steps 3] [--arch densenet121] [--repeat N]

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
    x = torch.rand(batch, 3, size, size) * 2 - 1
    if arch.startswith("deeplab"):
        from torchvision.models.segmentation import deeplabv3_resnet50, deeplabv3_resnet101
        fn = deeplabv3_resnet101 if arch.endswith("101") else deeplabv3_resnet50
        net = fn(weights=None, weights_backbone=None, num_classes=19, aux_loss=False)
        model = lambda t: net(t)["out"]  # noqa: E731
        model.train = net.train
        params = net.parameters()
        y = torch.randint(0, 19, (batch, size, size))
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0)
    else:
        net = DecisionDensenetModel(3) if arch == "densenet121" else DecisionResnetModel(3, depth=int(arch[6:]))
        model, params = net, net.parameters()
        y = (torch.rand(batch, 3) > 0.5).float()
        loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    opt = torch.optim.Adam(params, lr=1e-4)
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
        os.makedirs(f"{d}/masks")
        rng = np.random.default_rng(0)
        with open(f"{d}/labels.csv", "w") as f:
            f.write("file,a,b,c\n")
            for i in range((steps + 1) * batch):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(f"{d}/img/{i:05}.png")
                Image.fromarray(rng.integers(0, 19, (size, size), dtype=np.uint8)).save(f"{d}/masks/{i:05}.png")
                f.write(f"{i:05}.png,{i % 2},{i // 2 % 2},{i // 4 % 2}\n")
        common = ["--size", str(size), "--batch", str(batch), "--epochs", "1", "--out", f"{d}/c.safetensors",
                  "--log", f"{d}/log.jsonl"]
        if arch.startswith("deeplab"):
            task = ["segmenter", "--images", f"{d}/img", "--masks", f"{d}/masks", "--classes", "19",
                    "--backbone", "resnet" + arch.split("resnet")[1]]
        else:
            task = ["classifier", "--images", f"{d}/img", "--labels", f"{d}/labels.csv", "--attributes", "a,b,c",
                    "--arch", arch]
        subprocess.run([steex, "--device", "cpu", "train", *task, *common], check=True)
        steps_logged = [json.loads(l) for l in open(f"{d}/log.jsonl") if '"step"' in l]
        rates = [s["images_per_s"] for s in steps_logged if s["event"] == "step"][1:]
    return sum(rates) / len(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="densenet121")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1, help="alternate the two sides N times, report medians")
    a = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    runs = {"steex": [], "pytorch": []}
    for _ in range(a.repeat):
        runs["steex"].append(our_rate(a.arch, a.size, a.batch, a.steps))
        runs["pytorch"].append(torch_rate(a.arch, a.size, a.batch, a.steps))
    med = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
    for side, r in med.items():
        print(json.dumps({"side": side, "arch": a.arch, "size": a.size, "batch": a.batch,
                          "images_per_s": round(r, 2), "runs": [round(x, 2) for x in runs[side]]}))
    print(f"ours / PyTorch: {med['steex'] / med['pytorch']:.2f}")


if __name__ == "__main__":
    main()
