"""Writes the fixtures of `steex metrics` (FID, FVA, MNAC) from PyTorch with random weights.

    /work/venv/bin/python tools/make_metrics_fixtures.py          # small, committed
    /work/venv/bin/python tools/make_metrics_fixtures.py --full   # + full-width Inception,
                                                                  #   into tests/fixtures/full

Needs torch, torchvision, numpy, scipy, Pillow and `pytorch-fid` (PyPI). Nothing is
downloaded: pytorch-fid's own `fid_inception_v3` builds the FID Inception (torchvision's
Inception3 with its FIDInceptionA/C/E_1/E_2 blocks), with its weight download replaced by
the model's own random state dict. The committed variant is the same classes with every
channel count divided by 16 (BasicConv2d patched in torchvision's inception module; the
3 input channels are kept), which exercises every block type in a few hundred kB; `--full`
writes the real-size network (~95 MB).

Written to tests/fixtures/metrics/:
- frechet_{a,b}.npy (200x64 Gaussian features) and frechet.json: pytorch-fid's
  `calculate_frechet_distance` of their statistics;
- inception_div16.pth, images real/*.png, fake/*.png (64x64), inception_features_{real,fake}.npy
  (pytorch-fid's `InceptionV3([3])` on the images as its dataset loads them) and
  inception.json: FID from pytorch-fid's `calculate_activation_statistics` +
  `calculate_frechet_distance`;
- face_w4.pth (torchvision ResNet-50 layout, stem width 4, 8631 outputs), oracle_w4.pth (the
  reference's `OracleResnet`: `Resnet50_ft_dag` layout, width 4, 40 outputs), images
  face_query/*.png, face_cf/*.png (224x224), their embeddings / logits and face.json with
  the FVA and MNAC computed in torch.
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.models.inception as tvi
from PIL import Image

import pytorch_fid.inception as pfi
from pytorch_fid.fid_score import calculate_activation_statistics, calculate_frechet_distance

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def signal(name, t):
    t = torch.as_tensor(t).double()
    assert t.std() > 1e-3 * max(1.0, float(t.abs().max())), f"{name} is near-constant"


def randomize(model, gen):
    """Kaiming-normal convolutions and non-trivial batch-norm statistics, so activations
    neither vanish nor explode through ~50 layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.6 + 0.8 * torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
        elif isinstance(m, nn.Linear):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / m.in_features ** 0.5)
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def calibrate(model, x, forward):
    """Sets every batch-norm's running statistics to those of `forward(x)` (one pass in
    training mode, cumulative average), so features vary from image to image instead of
    being dominated by the random network's constant response."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        forward(x)
        # A floor on the variances: channels that barely vary over 16 images would otherwise
        # scale rounding errors up by orders of magnitude (an ill-conditioned fixture).
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.clamp_(min=float(m.running_var.mean()))
    model.eval()


def smooth_image(gen, h, w, coarse=8):
    """uint8 HxWx3: low-frequency colour noise (compresses well as PNG)."""
    low = torch.rand(1, 3, coarse, coarse, generator=gen)
    img = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    img = (img + 0.03 * torch.randn(1, 3, h, w, generator=gen)).clamp(0, 1)
    return (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def write_images(folder, names, gen, h, w, coarse=8):
    os.makedirs(folder, exist_ok=True)
    for n in names:
        Image.fromarray(smooth_image(gen, h, w, coarse)).save(os.path.join(folder, n))


# ------------------------------------------------------------------------------------------
# Frechet distance on Gaussian features

def frechet_fixture(out):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((200, 64)).astype(np.float32)
    mix = rng.standard_normal((64, 64)) * 0.3 + np.eye(64)
    b = (rng.standard_normal((200, 64)) @ mix + 0.25).astype(np.float32)
    np.save(f"{out}/frechet_a.npy", a)
    np.save(f"{out}/frechet_b.npy", b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    # A third set to swap in for `b`: other mean, other covariance.
    c = (rng.standard_normal((200, 64)) * 1.5 - 0.1).astype(np.float32)
    np.save(f"{out}/frechet_c.npy", c)
    c64 = c.astype(np.float64)
    stats = {k: (v.mean(0), np.cov(v, rowvar=False)) for k, v in (("a", a64), ("b", b64), ("c", c64))}
    fd = lambda x, y: float(calculate_frechet_distance(*stats[x], *stats[y]))  # noqa: E731
    fid, fid_ba, fid_ac = fd("a", "b"), fd("b", "a"), fd("a", "c")
    assert abs(fid_ac - fid) > 0.1 * fid, (fid, fid_ac)
    json.dump({"fid": fid, "fid_ba": fid_ba, "fid_ac": fid_ac,
               "source": "pytorch_fid.fid_score.calculate_frechet_distance"},
              open(f"{out}/frechet.json", "w"), indent=1)
    print("frechet", fid, "(b, a)", fid_ba, "(a, c)", fid_ac)


# ------------------------------------------------------------------------------------------
# FID Inception

def fid_inception(div, seed):
    """pytorch-fid's `InceptionV3([3])` built by its own `fid_inception_v3`, channels / div,
    random weights, no download."""
    orig_conv = tvi.BasicConv2d

    class Reduced(orig_conv):
        def __init__(self, cin, cout, **kw):
            super().__init__(cin if cin == 3 else cin // div, cout // div, **kw)

    captured = {}
    orig_builder = pfi._inception_v3

    def builder(*a, **k):
        captured["m"] = orig_builder(*a, **k)
        if div != 1:
            captured["m"].fc = nn.Linear(2048 // div, 1008)
        return captured["m"]

    def loader(*a, **k):
        m = captured["m"]
        randomize(m, torch.Generator().manual_seed(seed))
        return m.state_dict()

    tvi.BasicConv2d = Reduced if div != 1 else orig_conv
    pfi._inception_v3, pfi.load_state_dict_from_url = builder, loader
    try:
        model = pfi.InceptionV3([3])
    finally:
        tvi.BasicConv2d, pfi._inception_v3 = orig_conv, orig_builder
    model.eval()
    return model, captured["m"]


def inception_fixture(out, div, name, seed, n_images=8):
    model, inception = fid_inception(div, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    names = [f"img{i}.png" for i in range(n_images)]
    real_dir, fake_dir = f"{out}/real", f"{out}/fake"
    if not os.path.isdir(real_dir):
        write_images(real_dir, names, gen, 64, 64)
        write_images(fake_dir, names, gen, 64, 64, coarse=24)
    # Its own generator: the statistics do not depend on whether the images already existed.
    cgen = torch.Generator().manual_seed(seed + 2)
    calib = torch.stack([torchvision.transforms.functional.to_tensor(smooth_image(cgen, 64, 64, c))
                         for c in (4, 8, 16, 32) * 4])
    calibrate(model, calib, model)
    torch.save(inception.state_dict(), f"{out}/{name}.pth")
    dims = 2048 // div
    # pytorch-fid's own pipeline: its dataset, its statistics, its distance.
    stats = [calculate_activation_statistics(sorted(os.path.join(d, n) for n in names), model,
                                             batch_size=4, dims=dims, device="cpu", num_workers=0)
             for d in (real_dir, fake_dir)]
    fid = calculate_frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
    # Reference features in float64 (the same network and inputs): a float32 reference would
    # carry PyTorch's own rounding, as large as ours.
    model.double()
    for key, folder in (("real", real_dir), ("fake", fake_dir)):
        files = sorted(os.path.join(folder, n) for n in names)
        x = torch.stack([torchvision.transforms.functional.to_tensor(Image.open(f).convert("RGB"))
                         for f in files]).double()
        with torch.no_grad():
            f = model(x)[0].squeeze(-1).squeeze(-1)
        signal(f"{name} features", f)
        np.save(f"{out}/{name}_features_{key}.npy", f.numpy().astype(np.float32))
    json.dump({"fid": float(fid), "dims": dims, "width_divisor": div, "images": names},
              open(f"{out}/{name}.json", "w"), indent=1)
    print(name, "fid", fid)


# ------------------------------------------------------------------------------------------
# Face model (torchvision ResNet-50 layout) and oracle (reference OracleResnet layout)

class TorchvisionResNet(torchvision.models.resnet.ResNet):
    """torchvision's ResNet with Bottleneck blocks and stem width `w` (64 in torchvision):
    the same classes and names, fewer channels."""

    def __init__(self, w, layers, num_classes):
        nn.Module.__init__(self)
        B = torchvision.models.resnet.Bottleneck
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = w, 1, 1, 64
        self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(B, w, layers[0])
        self.layer2 = self._make_layer(B, 2 * w, layers[1], stride=2)
        self.layer3 = self._make_layer(B, 4 * w, layers[2], stride=2)
        self.layer4 = self._make_layer(B, 8 * w, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * w * 4, num_classes)

    def embed(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Resnet50FtDag(nn.Module):
    """The reference's `Resnet50_ft_dag` (models/OracleResnetModel.py), written as a loop
    with the same module names, channels scaled by `w / 64`: 7x7/2 stem without bias, max
    pool 3x3/2 with ceil mode and no padding, Caffe-style bottlenecks (stride on the 1x1
    reduce convolution, `_proj` shortcut on the first block), average pool 7x7/1."""

    def __init__(self, w=64, layers=(3, 4, 6, 3)):
        super().__init__()
        self.conv1_7x7_s2 = nn.Conv2d(3, w, kernel_size=[7, 7], stride=(2, 2), padding=(3, 3), bias=False)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(w)
        self.pool1_3x3_s2 = nn.MaxPool2d(kernel_size=[3, 3], stride=[2, 2], padding=(0, 0), dilation=1,
                                         ceil_mode=True)
        self.blocks = []
        inp = w
        for s, n in enumerate(layers):
            planes = w << s
            for b in range(n):
                p = f"conv{s + 2}_{b + 1}"
                stride = 2 if (b == 0 and s > 0) else 1
                setattr(self, f"{p}_1x1_reduce", nn.Conv2d(inp, planes, 1, stride=stride, bias=False))
                setattr(self, f"{p}_1x1_reduce_bn", nn.BatchNorm2d(planes))
                setattr(self, f"{p}_3x3", nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False))
                setattr(self, f"{p}_3x3_bn", nn.BatchNorm2d(planes))
                setattr(self, f"{p}_1x1_increase", nn.Conv2d(planes, 4 * planes, 1, bias=False))
                setattr(self, f"{p}_1x1_increase_bn", nn.BatchNorm2d(4 * planes))
                if b == 0:
                    setattr(self, f"{p}_1x1_proj", nn.Conv2d(inp, 4 * planes, 1, stride=stride, bias=False))
                    setattr(self, f"{p}_1x1_proj_bn", nn.BatchNorm2d(4 * planes))
                self.blocks.append((p, b == 0))
                inp = 4 * planes
        self.pool5_7x7_s1 = nn.AvgPool2d(kernel_size=[7, 7], stride=[1, 1], padding=0)
        self.classifier = Identity()

    def forward(self, x):
        m = lambda n: getattr(self, n)  # noqa: E731
        x = self.pool1_3x3_s2(F.relu(self.conv1_7x7_s2_bn(self.conv1_7x7_s2(x))))
        for p, proj in self.blocks:
            y = F.relu(m(f"{p}_1x1_reduce_bn")(m(f"{p}_1x1_reduce")(x)))
            y = F.relu(m(f"{p}_3x3_bn")(m(f"{p}_3x3")(y)))
            y = m(f"{p}_1x1_increase_bn")(m(f"{p}_1x1_increase")(y))
            short = m(f"{p}_1x1_proj_bn")(m(f"{p}_1x1_proj")(x)) if proj else x
            x = F.relu(short + y)
        pooled = self.pool5_7x7_s1(x)
        c = self.classifier(pooled)
        return c.view(c.size(0), -1), pooled


class OracleResnet(nn.Module):
    """The reference's `OracleResnet`: `feat_extract` (classifier replaced by Identity) and a
    Linear(2048 * w / 64, 40) `classifier`; returns probabilities."""

    def __init__(self, w=64, num_classes=40):
        super().__init__()
        self.feat_extract = Resnet50FtDag(w)
        self.classifier = nn.Linear(32 * w, num_classes)

    def logits(self, x):
        return self.classifier(self.feat_extract(x)[0])

    def forward(self, x):
        return torch.sigmoid(self.logits(x))


FACE_MEAN_BGR = (91.4953, 103.8827, 131.0912)


def face_input(img_u8):
    """VGGFace2 preprocessing: 0..255, RGB -> BGR, minus the BGR mean."""
    x = torch.from_numpy(np.array(img_u8)).double().permute(2, 0, 1)[[2, 1, 0]]
    return x - torch.tensor(FACE_MEAN_BGR, dtype=torch.float64).view(3, 1, 1)


def oracle_input(img_u8):
    """The reference's MNAC preprocessing at 224x224: ToTensor, Normalize(0.5, 0.5)."""
    return torchvision.transforms.functional.to_tensor(img_u8).double() * 2 - 1


def sparsify_last_block(face, x, q=0.97):
    """Shifts the last bottleneck's output down so that only the top `1 - q` of each channel's
    responses over `x` stay above zero after its ReLU. A random ResNet's pooled features share
    one large positive mean, which puts every cosine near 1 (FVA would be 1 for any
    embedder); sparse features vary from image to image, so cosines spread on both sides of
    the 0.5 threshold."""
    blk, cap = face.layer4[-1], {}
    h = blk.bn3.register_forward_hook(lambda mod, inp, out: cap.setdefault("pre", out))
    with torch.no_grad():
        y = face.maxpool(face.relu(face.bn1(face.conv1(x))))
        idn = face.layer4[:-1](face.layer3(face.layer2(face.layer1(y))))
        blk(idn)
        h.remove()
        pre = cap["pre"] + idn
        thr = torch.quantile(pre.transpose(0, 1).reshape(pre.shape[1], -1), q, dim=1)
        blk.bn3.bias -= thr


def face_fixture(out, seed, n=6):
    gen = torch.Generator().manual_seed(seed)
    # 100 identities instead of VGGFace2's 8631 keeps the file small; `fc` is not used.
    face = TorchvisionResNet(4, (3, 4, 6, 3), 100).eval()
    randomize(face, gen)
    oracle = OracleResnet(4).eval()
    randomize(oracle, gen)
    calib = [smooth_image(gen, 224, 224, c) for c in (4, 8, 16, 32) * 4]
    calibrate(face, torch.stack([face_input(i) for i in calib]).float(), face.embed)
    sparsify_last_block(face, torch.stack([face_input(i) for i in calib]).float())
    calibrate(oracle, torch.stack([oracle_input(i) for i in calib]).float(), oracle.logits)
    names = [f"face{i}.png" for i in range(n)]
    write_images(f"{out}/face_query", names, gen, 224, 224)
    os.makedirs(f"{out}/face_cf", exist_ok=True)
    # Counterfactuals: some close to their query (same face), some not.
    for i, nm in enumerate(names):
        q = np.asarray(Image.open(f"{out}/face_query/{nm}").convert("RGB")).astype(np.float64)
        other = smooth_image(gen, 224, 224).astype(np.float64)
        t = [0.05, 0.9, 0.2, 1.0, 0.5, 0.1][i % 6]
        Image.fromarray(((1 - t) * q + t * other).round().astype(np.uint8)).save(f"{out}/face_cf/{nm}")
    # Decision boundaries of the oracle through the mean feature, so decisions vary.
    with torch.no_grad():
        allx = torch.stack([oracle_input(np.asarray(Image.open(f"{out}/{d}/{nm}").convert("RGB")))
                            for d in ("face_query", "face_cf") for nm in names])
        f = oracle.feat_extract(allx.float())[0]
        oracle.classifier.bias.copy_(-(f.mean(0) @ oracle.classifier.weight.T))
    torch.save(face.state_dict(), f"{out}/face_w4.pth")
    torch.save({"model_state_dict": oracle.state_dict(), "epoch": 3, "loss": 0.25}, f"{out}/oracle_w4.tar")
    load = lambda d: [np.asarray(Image.open(f"{out}/{d}/{nm}").convert("RGB")) for nm in names]  # noqa: E731
    q_imgs, c_imgs = load("face_query"), load("face_cf")
    # Reference outputs in float64 (see inception_fixture).
    face.double()
    oracle.double()
    with torch.no_grad():
        eq = face.embed(torch.stack([face_input(i) for i in q_imgs]))
        ec = face.embed(torch.stack([face_input(i) for i in c_imgs]))
        lq = oracle.logits(torch.stack([oracle_input(i) for i in q_imgs]))
        lc = oracle.logits(torch.stack([oracle_input(i) for i in c_imgs]))
        pq, pc = oracle(torch.stack([oracle_input(i) for i in q_imgs])), oracle(
            torch.stack([oracle_input(i) for i in c_imgs]))
    for k, t in (("face_embed_query", eq), ("face_embed_cf", ec), ("oracle_logits_query", lq),
                 ("oracle_logits_cf", lc)):
        signal(k, t)
        np.save(f"{out}/{k}.npy", t.numpy().astype(np.float32))
    cos = F.cosine_similarity(eq.double(), ec.double(), dim=1)
    fva = float((cos > 0.5).double().mean())
    # Random weights put every cosine near 1: also a threshold inside their range (the middle
    # of the widest gap between sorted cosines), so the comparison itself is exercised.
    cs = sorted(cos.tolist())
    gap = max(range(1, len(cs)), key=lambda i: cs[i] - cs[i - 1])
    threshold = (cs[gap] + cs[gap - 1]) / 2
    fva_at = float((cos > threshold).double().mean())
    min_abs_logit = float(torch.cat([lq, lc]).abs().min())
    # MNAC as the reference computes it (probabilities > 0.5), target attribute excluded.
    target = 31  # Smiling
    labels_q, labels_c = (pq > 0.5).double(), (pc > 0.5).double()
    diff = (labels_q - labels_c).abs()
    mnac_all = float(diff.sum(1).mean())
    keep = torch.ones(diff.shape[1], dtype=torch.bool)
    keep[target] = False
    mnac = float(diff[:, keep].sum(1).mean())
    # With attribute 0 as the target instead (`--oracle-target 0`).
    mnac_target0 = float(diff[:, 1:].sum(1).mean())
    json.dump({"fva": fva, "cosine": cos.tolist(), "fva_threshold": threshold, "fva_at_threshold": fva_at,
               "cosine_gap": cs[gap] - cs[gap - 1], "min_abs_logit": min_abs_logit, "mnac": mnac, "mnac_all_attributes": mnac_all,
               "mnac_target0": mnac_target0,
               "mnac_target": target, "images": names}, open(f"{out}/face.json", "w"), indent=1)
    print("fva", fva, cos.tolist(), "at", threshold, fva_at, "mnac", mnac, "mnac (all)", mnac_all,
          "min |logit|", min_abs_logit)
    assert 0 < fva_at < 1
    # The published threshold must itself separate the pairs: cosines on both sides of 0.5,
    # none within 0.05 of it (so float32 rounding cannot move a pair across).
    assert 0 < fva < 1, f"FVA {fva}: every cosine on one side of 0.5"
    assert min(abs(c - 0.5) for c in cs) > 0.05, cs
    assert mnac > 0 and mnac_target0 != mnac


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="also the full-width FID Inception (~95 MB)")
    ap.add_argument("--only", default="frechet,inception,face",
                    help="comma-separated parts to write (default: all of frechet,inception,face)")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    out = os.path.join(ROOT, "metrics")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    if "frechet" in parts:
        frechet_fixture(out)
    if "inception" in parts:
        inception_fixture(out, 16, "inception_div16", 11)
    if "face" in parts:
        face_fixture(out, 21)
    if args.full:
        full = os.path.join(ROOT, "full", "metrics")
        os.makedirs(full, exist_ok=True)
        for d in ("real", "fake"):
            if not os.path.isdir(f"{full}/{d}"):
                import shutil
                shutil.copytree(f"{out}/{d}", f"{full}/{d}")
        inception_fixture(full, 1, "inception_full", 12)


if __name__ == "__main__":
    main()
