"""Writes `tests/fixtures/softmax_resnet`: a plain torchvision classifier state dict (keys
`conv1.weight` ... `fc.weight`, no `resnet.` prefix, as `torch.save(model.state_dict())`
writes it) of a reduced ResNet (basic blocks, one per stage, stem width 8) with a 5-class
softmax head, PyTorch's default init, and its logits on two inputs.

    tools/.venv/bin/python tools/make_softmax_fixture.py
"""
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from steex_reference import ReducedResNet  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "softmax_resnet")


def npy(path, t):
    np.save(path, t.detach().cpu().numpy().astype(np.float32))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    model = ReducedResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], width=8, num_classes=5)
    model.eval()
    torch.save(model.state_dict(), f"{OUT}/model.pth")
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for tag, (h, w) in {"64x64": (64, 64), "64x128": (64, 128)}.items():
            x = torch.rand(2, 3, h, w, generator=gen) * 2 - 1
            y = model(x).double()
            assert y.std() > 1e-4, "near-constant logits"
            npy(f"{OUT}/input_{tag}.npy", x)
            npy(f"{OUT}/logits_{tag}.npy", y)
            print(tag, y.numpy().round(4).tolist())


if __name__ == "__main__":
    main()
