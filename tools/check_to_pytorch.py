"""Checks a `weights-convert to-pytorch` checkpoint in PyTorch: `torch.load` (weights_only)
takes it, the model its safetensors source describes (the published `DecisionDensenetModel`
/ `DecisionResnetModel`, or torchvision's DeepLabV3 layout) accepts its `model_state_dict`
with `load_state_dict(strict=True)`, and every tensor equals the source's.

A SEAN generator (kind `sean`): the checkpoint is the state dict itself (`latest_net_G.pth`);
`steex_reference.SEANGenerator` of the source's sizes takes it with `load_state_dict(strict=
True)`; in `eval()` every spectral-normed convolution's weight (`weight_orig / (u . W v)`)
equals the source's `weight` to 1e-5 relative, every other tensor is equal, and the
generator runs (encode, generate) on a random image and mask.

    tools/.venv/bin/python tools/check_to_pytorch.py --safetensors C.safetensors --checkpoint C.tar
"""
import argparse
import os
import sys

import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from steex_reference import DecisionDensenetModel, DecisionResnetModel, ReducedResNet  # noqa: E402


def model_of(meta):
    kind = meta["kind"]
    BB = torchvision.models.resnet
    if kind == "densenet":
        return DecisionDensenetModel(int(meta["classes"]), growth_rate=int(meta["growth_rate"]),
                                     block_config=tuple(int(b) for b in meta["block_config"].split(",")),
                                     num_init_features=int(meta["num_init_features"]), bn_size=int(meta["bn_size"]))
    block = BB.BasicBlock if meta["block"] == "basic" else BB.Bottleneck
    layers = [int(x) for x in meta["layers"].split(",")]
    if kind == "resnet":
        return DecisionResnetModel(int(meta["classes"]), block=block, layers=layers, width=int(meta["width"]))
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3
    width, head, classes = int(meta["width"]), int(meta.get("head", 256)), int(meta["classes"])
    bb = ReducedResNet(block, layers, width, replace_stride_with_dilation=[False, True, True])
    cls = torch.nn.Sequential(ASPP(8 * width * 4, [12, 24, 36], head), torch.nn.Conv2d(head, head, 3, padding=1, bias=False),
                              torch.nn.BatchNorm2d(head), torch.nn.ReLU(), torch.nn.Conv2d(head, classes, 1))
    return DeepLabV3(IntermediateLayerGetter(bb, return_layers={"layer4": "out"}), cls, None)


def check_sean(meta, source, ck):
    import steex_reference as ref
    ref.Spade.__init__.__defaults__ = (int(meta.get("spade_hidden", 128)),)
    ref.Zencoder.__init__.__defaults__ = (int(meta.get("encoder_ngf", 32)), 2)
    labels, width = int(meta["labels"]), int(meta["width"])
    g = ref.SEANGenerator(label_nc=labels, ngf=int(meta["ngf"]), style_length=int(meta["style_length"]),
                          crop_size=width, aspect_ratio=float(meta["aspect_ratio"]))
    g.load_state_dict(ck, strict=True)
    g.eval()
    worst = 0.0
    for name, t in source.items():
        p = name[:-len(".weight")]
        if p + ".weight_orig" in ck:
            w, u, v = ck[p + ".weight_orig"].double(), ck[p + ".weight_u"].double(), ck[p + ".weight_v"].double()
            eval_w = w / torch.dot(u, w.reshape(w.shape[0], -1) @ v)
            rel = float((eval_w - t.double()).abs().max() / t.double().abs().max())
            worst = max(worst, rel)
            assert rel <= 1e-5, f"{name}: eval weight differs by {rel:.2e}"
        else:
            assert torch.equal(ck[name], t), name
    with torch.no_grad():
        g.set_noise("off")
        h = round(width // 32 / float(meta["aspect_ratio"])) * 32
        seg = ref.one_hot(torch.randint(0, labels, (1, h, width)), labels)
        out = g(seg, torch.rand(1, 3, h, width) * 2 - 1)
        assert out.shape == (1, 3, h, width) and torch.isfinite(out).all()
    print(f"ok: {len(ck)} tensors, sean loaded with load_state_dict(strict=True); "
          f"spectral-normed eval weights within {worst:.1e} of the source")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--safetensors", required=True)
    ap.add_argument("--checkpoint", required=True)
    a = ap.parse_args()
    with safe_open(a.safetensors, "pt") as f:
        meta = f.metadata()
    source = load_file(a.safetensors)
    ck = torch.load(a.checkpoint, weights_only=True)
    if meta["kind"] == "sean":
        return check_sean(meta, source, ck)
    model = model_of(meta)
    model.load_state_dict(ck["model_state_dict"], strict=True)
    state = model.state_dict()
    for name, t in source.items():
        name = name[len("resnet."):] if meta.get("layout") == "torchvision" else name
        assert torch.equal(state[name], t), name
    print(f"ok: {len(source)} tensors, {meta['kind']} loaded with load_state_dict(strict=True)")


if __name__ == "__main__":
    main()
