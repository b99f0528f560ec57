"""Checks a `weights-convert to-pytorch` checkpoint in PyTorch: `torch.load` (weights_only)
takes it, the model its safetensors source describes (the published `DecisionDensenetModel`
/ `DecisionResnetModel`, or torchvision's DeepLabV3 layout) accepts its `model_state_dict`
with `load_state_dict(strict=True)`, and every tensor equals the source's.

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--safetensors", required=True)
    ap.add_argument("--checkpoint", required=True)
    a = ap.parse_args()
    with safe_open(a.safetensors, "pt") as f:
        meta = f.metadata()
    source = load_file(a.safetensors)
    ck = torch.load(a.checkpoint, weights_only=True)
    model = model_of(meta)
    model.load_state_dict(ck["model_state_dict"], strict=True)
    state = model.state_dict()
    for name, t in source.items():
        name = name[len("resnet."):] if meta.get("layout") == "torchvision" else name
        assert torch.equal(state[name], t), name
    print(f"ok: {len(source)} tensors, {meta['kind']} loaded with load_state_dict(strict=True)")


if __name__ == "__main__":
    main()
