"""Writes the project's test fixtures from PyTorch (and torchvision) with random weights.

    tools/.venv/bin/python tools/make_fixtures.py            # small fixtures, committed
    tools/.venv/bin/python tools/make_fixtures.py --full     # full-width checkpoints too,
                                                             # into tests/fixtures/full (ignored)

Every model is built with PyTorch's default init, then given non-trivial batch-norm
statistics (and, for SEAN, blending weights, noise scales and moved spectral-norm vectors),
and saved in the published layout in both `torch.save` serialisations (zip and legacy
`_use_new_zipfile_serialization=False`). Inputs and the outputs PyTorch computes on them are
saved beside them; outputs are asserted not to be near-constant.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from steex_reference import (ACE, ReducedResNet, SEANGenerator, DecisionDensenetModel,  # noqa: E402
                             DecisionResnetModel, move_spectral_vectors, one_hot,
                             published_loop, randomize_bn, randomize_sean,
                             settings_loop, NoiseReplay)

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def save_both(obj, path):
    """`path` in the zip format and `<stem>_legacy<ext>` in the legacy one."""
    torch.save(obj, path)
    stem, ext = os.path.splitext(path)
    torch.save(obj, f"{stem}_legacy{ext}", _use_new_zipfile_serialization=False)


def signal(name, t):
    t = t.detach().double()
    assert t.std() > 1e-3 * max(1.0, t.abs().max()), f"{name} is near-constant"
    return t


def npy(path, t):
    np.save(path, t.detach().cpu().numpy().astype(np.float32))


def smooth_image(gen, h, w):
    low = torch.rand(1, 3, h // 8, w // 8, generator=gen) * 2 - 1
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear",
                                          align_corners=False)
    img = img + 0.1 * torch.randn(1, 3, h, w, generator=gen)
    return img.clamp(-1, 1)


def block_mask(gen, h, w, labels):
    """A label map of rectangles drawn from `labels` (others absent), 8x8-aligned."""
    m = torch.full((h, w), labels[0], dtype=torch.long)
    for lab in labels[1:]:
        y0 = int(torch.randint(0, h // 8 - 1, (1,), generator=gen)) * 8
        x0 = int(torch.randint(0, w // 8 - 1, (1,), generator=gen)) * 8
        hh = int(torch.randint(1, h // 16 + 2, (1,), generator=gen)) * 8
        ww = int(torch.randint(1, w // 16 + 2, (1,), generator=gen)) * 8
        m[y0:y0 + hh, x0:x0 + ww] = lab
    return m


def sean_fixture(out, label_nc, ngf, style_length, width, aspect, present, seed, legacy=True,
                 style_gain=None):
    """`style_gain=(lo, hi, k)`: blending weights drawn in [lo, hi] (sigmoid near 1: the
    style path dominates the SPADE one) and the style convolutions scaled by k, so that the
    image moves visibly with its codes (a random ngf-1 SEAN barely reacts to them)."""
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    height = round(width / aspect)
    g = SEANGenerator(label_nc, ngf, style_length, width, aspect)
    randomize_sean(g, seed)
    if style_gain is not None:
        lo, hi, k = style_gain
        with torch.no_grad():
            for m in g.modules():
                if isinstance(m, ACE):
                    m.blending_gamma.uniform_(lo, hi, generator=gen)
                    m.blending_beta.uniform_(lo, hi, generator=gen)
                    if m.use_rgb:
                        m.conv_gamma.weight.mul_(k)
                        m.conv_beta.weight.mul_(k)
    image = smooth_image(gen, height, width)
    mask = block_mask(gen, height, width, present)
    seg = one_hot(mask.unsqueeze(0), label_nc)
    g.set_noise("reference")
    move_spectral_vectors(g, seg, image)
    g.set_noise("off")
    sd = g.state_dict()
    if legacy:
        save_both(sd, f"{out}/latest_net_G.pth")
    else:
        torch.save(sd, f"{out}/latest_net_G.pth")
    # Eval-mode spectral-norm weights, as PyTorch computes them (no power iteration).
    expected = {}
    for name, m in g.named_modules():
        if hasattr(m, "weight_orig"):
            hook = next(h for h in m._forward_pre_hooks.values()
                        if type(h).__name__ == "SpectralNorm")
            expected[f"{name}.weight"] = hook.compute_weight(m, do_power_iteration=False)
    save_file({k: v.contiguous() for k, v in expected.items()}, f"{out}/sn_expected.safetensors")
    with torch.no_grad():
        codes = g.encode(image, seg)
        recon = g.generate(seg, codes)
        z = codes + 0.3 * torch.randn(codes.shape, generator=gen)
        gen_nonoise = g.generate(seg, z)
        g.set_noise("reference")
        noisy_pair = float((g.generate(seg, z) - g.generate(seg, z)).abs().mean())
        g.set_noise("off")
    # How far the image moves with its codes: z_custom is the codes + 0.3 N(0, 1).
    code_response = float((gen_nonoise - recon).abs().mean())
    print(f"{os.path.basename(out)}: mean |generate(z_custom) - generate(codes)| = "
          f"{code_response:.4f} (codes moved by 0.3 N(0, 1))", flush=True)
    if style_gain is not None:
        assert code_response >= 0.05, code_response
    npy(f"{out}/image.npy", image)
    Image.fromarray(mask.numpy().astype(np.uint8), mode="L").save(f"{out}/mask.png")
    npy(f"{out}/codes.npy", signal("codes", codes))
    npy(f"{out}/recon_nonoise.npy", signal("recon", recon))
    npy(f"{out}/z_custom.npy", z)
    npy(f"{out}/gen_nonoise.npy", signal("gen", gen_nonoise))
    meta = dict(label_nc=label_nc, ngf=ngf, style_length=style_length, width=width,
                height=height, aspect_ratio=aspect, present_labels=sorted(set(present)),
                seed=seed, noisy_pair_mean_abs_diff=noisy_pair, code_response=code_response)
    json.dump(meta, open(f"{out}/meta.json", "w"), indent=1)
    return g


def decision_inputs(gen):
    return {"64x64": smooth_image(gen, 64, 64), "64x128": smooth_image(gen, 64, 128)}


def checkpoint_dict(model, seed):
    """`{"epoch", "model_state_dict", "optimizer_state_dict", "loss"}` as the published
    training scripts save it; the optimiser has taken one step so its state holds tensors."""
    opt = torch.optim.Adam([p for p in model.parameters()][:3], lr=1e-4)
    loss = sum(p.sum() for p in [p for p in model.parameters()][:3])
    loss.backward()
    opt.step()
    opt.zero_grad()
    return {"epoch": 3, "model_state_dict": model.state_dict(),
            "optimizer_state_dict": opt.state_dict(), "loss": 0.4321}


def head_of(model):
    """The last linear layer of a decision model."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


def separate_inputs(model, inputs, target=4.0):
    """Centres the last layer on the inputs' mean feature and scales it so that the largest
    logit is `target`: a random network's pooled features share one large mean, which leaves
    the logits of different inputs within ~1e-3 of each other (inside a parity tolerance)."""
    fc, feats = head_of(model), []
    h = fc.register_forward_hook(lambda m, i, o: feats.append(i[0].detach()))
    with torch.no_grad():
        for x in inputs.values():
            model(x)
    h.remove()
    f = torch.cat(feats)
    with torch.no_grad():
        fc.bias.copy_(-(fc.weight @ f.mean(0)))
        y = f @ fc.weight.T + fc.bias
        k = target / float(y.abs().max())
        fc.weight.mul_(k)
        fc.bias.mul_(k)


def logit_separation(model, inputs):
    """min over outputs of |logit(a) - logit(b)| between the two inputs, / max(1, max|logit|)
    (the scale of the parity test's relative error)."""
    with torch.no_grad():
        ys = [model(x)[0] for x in inputs.values()]
    scale = max(1.0, max(float(y.abs().max()) for y in ys))
    return float((ys[0] - ys[1]).abs().min()) / scale


def decision_fixture(out, model, seed, inputs, legacy=True, separate=False):
    os.makedirs(out, exist_ok=True)
    randomize_bn(model, seed)
    ck = checkpoint_dict(model, seed)
    # The optimiser step changed three parameters: recompute outputs from the saved state.
    model.load_state_dict(ck["model_state_dict"])
    model.eval()
    if separate:
        separate_inputs(model, inputs)
        ck["model_state_dict"] = model.state_dict()
    sep = logit_separation(model, inputs)
    print(f"{os.path.basename(out)}: logits of the two inputs differ by >= {sep:.3g} x "
          f"max(1, max|logit|) (parity tolerance 1e-3)", flush=True)
    if separate:
        assert sep >= 0.05, sep
    if legacy:
        save_both(ck, f"{out}/checkpoint.tar")
    else:
        torch.save(ck, f"{out}/checkpoint.tar")
    with torch.no_grad():
        for tag, x in inputs.items():
            npy(f"{out}/input_{tag}.npy", x)
            npy(f"{out}/logits_{tag}.npy", signal(f"{out} logits", model(x)))


def explain_fixture(out, sean_dir, seed):
    """The published loop (noise off, 5 steps, general and region-targeted) on the square
    SEAN fixture and a DenseNet whose last layer is scaled so that the decision reacts to the
    style codes (a random one barely moves in five steps)."""
    os.makedirs(out, exist_ok=True)
    meta = json.load(open(f"{sean_dir}/meta.json"))
    L = meta["label_nc"]
    g = SEANGenerator(L, meta["ngf"], meta["style_length"], meta["width"], meta["aspect_ratio"])
    g.load_state_dict(torch.load(f"{sean_dir}/latest_net_G.pth", weights_only=True))
    g.eval()
    g.set_noise("off")
    image = torch.from_numpy(np.load(f"{sean_dir}/image.npy"))
    mask = torch.from_numpy(np.array(Image.open(f"{sean_dir}/mask.png"))).unsqueeze(0)
    seg = one_hot(mask, L)
    torch.manual_seed(seed)
    dm = DecisionDensenetModel(3, growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16,
                               bn_size=2)
    randomize_bn(dm, seed)
    for p in list(dm.parameters()) + list(g.parameters()):
        p.requires_grad_(False)
    attr, steps = 1, 5
    base_w, base_b = dm.classifier.weight.clone(), dm.classifier.bias.clone()
    with torch.no_grad():
        recon = g.generate(seg, g.encode(image, seg))
    chosen = None
    for k in [10.0, 100.0, 1e3, 1e4, 1e5]:
        with torch.no_grad():
            dm.classifier.weight.copy_(base_w * k)
            dm.classifier.bias.copy_(base_b * k)
            # The reconstruction at +-0.75, on the side of the query's decision, so that the
            # loop (which starts from the reconstruction) has to push it across.
            q, r = dm(image)[0, attr], dm(recon)[0, attr]
            dm.classifier.bias[attr] += (0.75 - r) if q - r > -0.75 else (-0.75 - r)
            r0 = float(dm(recon)[0, attr])
        _, probs, _, _, _ = published_loop(g, dm, image, seg, attr, steps)
        moved = abs(float(torch.logit(probs[0, attr].double())) - r0)
        print(f"scale {k}: recon logit {r0:.3f}, moved {moved:.3f}", flush=True)
        if moved >= 1.5:
            chosen = k
            break
    assert chosen is not None, "no scale makes the decision react"
    ck = {"epoch": 1, "model_state_dict": dm.state_dict(), "optimizer_state_dict": {},
          "loss": 0.1}
    torch.save(ck, f"{out}/checkpoint.tar")
    info = {"generator": os.path.basename(sean_dir), "scale": chosen, "attribute": attr,
            "steps": steps, "lr": 0.01, "lambda_prox": 0.3}
    for tag, regions in [("general", ()), ("targeted", (1, 10))]:
        z, probs, flip, prox, target = published_loop(g, dm, image, seg, attr, steps,
                                                      regions=regions)
        npy(f"{out}/cf_{tag}_z.npy", z)
        info[tag] = {"regions": list(regions), "target": float(target[0]),
                     "final_probs": probs[0].tolist(), "flip": float(flip[0]),
                     "prox": float(prox[0])}
    json.dump(info, open(f"{out}/meta.json", "w"), indent=1)


# Each `steex explain` setting that changes the result, run by the reference loop on the
# explain fixture (noise off): name -> (CLI arguments, settings_loop keyword arguments).
SETTINGS = {
    "default": (["--steps", "5"], dict(steps=5)),
    "lr": (["--steps", "5", "--lr", "0.05"], dict(steps=5, lr=0.05)),
    "lambda_prox": (["--steps", "5", "--lambda-prox", "3"], dict(steps=5, lambda_prox=3.0)),
    "target": (["--steps", "5", "--target", "TARGET_KEPT"], dict(steps=5, target="kept")),
    "region_ids": (["--steps", "5", "--region-ids", "2,13"], dict(steps=5, regions=(2, 13))),
    "early_stop": (["--steps", "40", "--early-stop", "2"], dict(steps=40, early_stop=2)),
    # The seeded noise: the reference replays the stream steex draws for the seed
    # (`examples/noise_stream.rs`, kept as explain/noise_seed7.npy).
    "seeded_noise": (["--steps", "5", "--noise", "seed:7"], dict(steps=5, noise_seed=7)),
}


def rust_noise_stream(seed, n, path):
    """The first n values of steex's `--noise seed:SEED` stream, written to `path` by the
    Rust example (the one part of a fixture Rust makes: the reference replays it)."""
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    subprocess.run(["cargo", "run", "--release", "--quiet", "--example", "noise_stream", "--",
                    str(seed), str(n), os.path.abspath(path)], cwd=repo, check=True)
    return np.load(path)


def noise_values_per_forward(g, seg, z):
    """How many stream values one generator forward takes."""
    replay = NoiseReplay(np.zeros(10**7, dtype=np.float32))
    g.set_noise(replay)
    with torch.no_grad():
        g.generate(seg, z)
    g.set_noise("off")
    return replay.used
# The preset changes names and the default attribute, not the loop: its test resolves
# `--regions nose,hair` and the default attribute through it and compares with "region_ids".


def explain_settings_fixture(out, sean_dir):
    """tests/fixtures/explain/settings.json and settings_<name>_z.npy: `settings_loop` on
    the explain fixture for each of SETTINGS."""
    meta = json.load(open(f"{sean_dir}/meta.json"))
    L = meta["label_nc"]
    g = SEANGenerator(L, meta["ngf"], meta["style_length"], meta["width"], meta["aspect_ratio"])
    g.load_state_dict(torch.load(f"{sean_dir}/latest_net_G.pth", weights_only=True))
    g.eval()
    g.set_noise("off")
    image = torch.from_numpy(np.load(f"{sean_dir}/image.npy"))
    mask = torch.from_numpy(np.array(Image.open(f"{sean_dir}/mask.png"))).unsqueeze(0)
    seg = one_hot(mask, L)
    dm = DecisionDensenetModel(3, growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16,
                               bn_size=2)
    dm.load_state_dict(torch.load(f"{out}/checkpoint.tar", weights_only=True)["model_state_dict"])
    dm.eval()
    for p in list(dm.parameters()) + list(g.parameters()):
        p.requires_grad_(False)
    info = json.load(open(f"{out}/meta.json"))
    attr0 = info["attribute"]
    with torch.no_grad():
        z0 = g.encode(image, seg)
        query_decision = int(float(torch.sigmoid(dm(image))[0, attr0]) > 0.5)
    results = {}
    for name, (cli, kw) in SETTINGS.items():
        kw = dict(kw)
        attr = kw.pop("attr", attr0)
        if kw.get("target") == "kept":
            kw["target"] = query_decision
            cli = [str(query_decision) if a == "TARGET_KEPT" else a for a in cli]
        seed = kw.pop("noise_seed", None)
        if seed is not None:
            n = noise_values_per_forward(g, seg, z0)
            g.set_noise(NoiseReplay(rust_noise_stream(seed, n, f"{out}/noise_seed{seed}.npy")))
            results_noise = {"seed": seed, "values_per_forward": n}
        z, updates, target = settings_loop(g, dm, image, seg, attr, **kw)
        g.set_noise("off")
        npy(f"{out}/settings_{name}_z.npy", z)
        moved = float((z - z0).norm())
        results[name] = {"cli": cli, "attribute": attr, "updates": updates, "target": target,
                         "moved": moved}
        if seed is not None:
            results[name]["noise"] = results_noise
        print(f"setting {name}: {updates} updates, target {target}, |z - z0| {moved:.4f}",
              flush=True)
    # Each setting must change the result, or its test could not tell it was ignored.
    zs = {k: np.load(f"{out}/settings_{k}_z.npy") for k in SETTINGS}
    for k in SETTINGS:
        if k != "default":
            d = float(np.abs(zs[k] - zs["default"]).max())
            results[k]["max_diff_from_default"] = d
            assert d > 1e-2, (k, d)
    json.dump({"query_decision": query_decision, "settings": results},
              open(f"{out}/settings.json", "w"), indent=1)


def reduced_deeplab(classes, width=2, layers=(1, 1, 2, 1)):
    """torchvision's DeepLabV3 from torchvision's own pieces (ResNet blocks with strides
    replaced by dilation, IntermediateLayerGetter, DeepLabHead/ASPP), with a narrow
    backbone so that the fixture is small (the 256-wide head is fixed by torchvision)."""
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
    bb = ReducedResNet(torchvision.models.resnet.Bottleneck, list(layers), width,
                       replace_stride_with_dilation=[False, True, True])
    body = IntermediateLayerGetter(bb, return_layers={"layer4": "out"})
    return DeepLabV3(body, DeepLabHead(8 * width * 4, classes), None)


def deeplab_fixture(out, model, seed, legacy=False):
    os.makedirs(out, exist_ok=True)
    randomize_bn(model, seed)
    ck = checkpoint_dict(model, seed)
    model.load_state_dict(ck["model_state_dict"])
    model.eval()
    (save_both if legacy else torch.save)(ck, f"{out}/checkpoint.tar")
    gen = torch.Generator().manual_seed(seed)
    x = smooth_image(gen, 64, 128)
    with torch.no_grad():
        y = model(x)["out"]
    npy(f"{out}/input.npy", x)
    npy(f"{out}/logits.npy", signal("deeplab logits", y))


def malicious(out):
    """Checkpoints whose pickles would run a command under `torch.load(weights_only=False)`."""
    os.makedirs(out, exist_ok=True)

    class Evil:
        def __init__(self, fn, arg):
            self.fn, self.arg = fn, arg

        def __reduce__(self):
            return (self.fn, (self.arg,))

    import builtins
    import subprocess
    payloads = {
        "os_system": Evil(os.system, "touch steex-pwned-marker"),
        "builtins_eval": Evil(builtins.eval, "__import__('os').system('touch steex-pwned-marker')"),
        "subprocess_popen": Evil(subprocess.Popen, ["touch", "steex-pwned-marker"]),
    }
    w = {"fc.weight": torch.randn(2, 2)}
    for name, p in payloads.items():
        save_both({"model_state_dict": w, "evil": p}, f"{out}/{name}.pth")

    class Unknown:  # an arbitrary class: its instance pickles as __main__.Unknown
        def __init__(self):
            self.x = 1
    Unknown.__module__ = "steex_fixture"
    Unknown.__qualname__ = "Unknown"
    sys.modules["steex_fixture"] = type(sys)("steex_fixture")
    sys.modules["steex_fixture"].Unknown = Unknown
    save_both({"model_state_dict": w, "config": Unknown()}, f"{out}/unknown_class.pth")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="also write full-width checkpoints")
    ap.add_argument("--only", default=None,
                    help="comma-separated fixture folders to write (default: all), e.g. "
                         "sean_wide,resnet_bottleneck")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    want = lambda name: only is None or name in only  # noqa: E731
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(1)

    # SEAN: a square model with 19 labels and a 2:1 one with 20, several labels absent.
    # ngf 1 keeps them small: the 128-wide SPADE branch is fixed by the published layout.
    # sean_wide's style path is strengthened (see sean_fixture) so that a wrong style path
    # cannot pass the image tolerance.
    if want("sean_sq"):
        sean_fixture(f"{ROOT}/sean_sq", 19, 1, 24, 64, 1.0, [0, 1, 2, 4, 5, 10, 13, 17], seed=11)
    if want("sean_wide"):
        sean_fixture(f"{ROOT}/sean_wide", 20, 1, 24, 128, 2.0, [0, 2, 8, 10, 13, 19], seed=12,
                     legacy=False, style_gain=(2.0, 3.0, 6.0))

    inputs = decision_inputs(gen)
    torch.manual_seed(21)
    if want("densenet"):
        decision_fixture(f"{ROOT}/densenet",
                         DecisionDensenetModel(3, growth_rate=8, block_config=(2, 2, 2, 2),
                                               num_init_features=16, bn_size=2), 21, inputs)
    BB = torchvision.models.resnet
    torch.manual_seed(22)
    if want("resnet_basic"):
        decision_fixture(f"{ROOT}/resnet_basic",
                         DecisionResnetModel(3, block=BB.BasicBlock, layers=[2, 1, 1, 1], width=8),
                         22, inputs)
    torch.manual_seed(23)
    if want("resnet_bottleneck"):
        # Its last layer is centred and scaled (separate_inputs) so that the two inputs'
        # logits differ by far more than the parity tolerance.
        decision_fixture(f"{ROOT}/resnet_bottleneck",
                         DecisionResnetModel(4, block=BB.Bottleneck, layers=[1, 2, 1, 1], width=8),
                         23, inputs, separate=True)
    torch.manual_seed(24)
    if want("deeplab"):
        deeplab_fixture(f"{ROOT}/deeplab", reduced_deeplab(20), 24)
    if want("malicious"):
        malicious(f"{ROOT}/malicious")
    if want("explain"):
        explain_fixture(f"{ROOT}/explain", f"{ROOT}/sean_sq", 41)
    if want("explain") or want("explain_settings"):
        explain_settings_fixture(f"{ROOT}/explain", f"{ROOT}/sean_sq")

    if args.full:
        full = f"{ROOT}/full"
        os.makedirs(full, exist_ok=True)
        torch.manual_seed(99)
        g = SEANGenerator(19, 64, 512, 256, 1.0)
        randomize_sean(g, 99)
        save_both(g.state_dict(), f"{full}/sean_celebamhq.pth")
        for name, model in [("densenet121", DecisionDensenetModel(3)),
                            ("resnet18", DecisionResnetModel(3, depth=18)),
                            ("resnet50", DecisionResnetModel(3, depth=50))]:
            torch.manual_seed(31)
            decision_fixture(f"{full}/{name}", model, 31, inputs, legacy=False)
        from torchvision.models.segmentation import deeplabv3_resnet50, deeplabv3_resnet101
        for name, fn in [("deeplabv3_resnet50", deeplabv3_resnet50),
                         ("deeplabv3_resnet101", deeplabv3_resnet101)]:
            torch.manual_seed(32)
            deeplab_fixture(f"{full}/{name}", fn(weights=None, weights_backbone=None,
                                                 num_classes=20, aux_loss=False), 32)
    print("fixtures written to", os.path.normpath(ROOT))


if __name__ == "__main__":
    main()
