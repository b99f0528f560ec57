"""Writes the one-training-step parity fixtures of `steex train` from PyTorch.

    /path/to/python tools/make_train_fixtures.py

For a reduced DenseNet (torchvision's `DenseNet`, wrapped as the published
`DecisionDensenetModel`) and two reduced ResNets (torchvision's blocks, wrapped as
`DecisionResnetModel`), in train mode (batch statistics; running statistics updated with
momentum 0.1): the weights before the step, a batch, the `BCEWithLogitsLoss` (mean), the
gradients, and the weights after one `torch.optim.Adam` step (lr 1e-4), under
`tests/fixtures/train_step/<name>/`. The step is computed in float64 from the float32
weights and batch (stored as float32), so the reference carries no float32 round-off of its
own: PyTorch's own float32 gradients differ from it by up to ~1e-4 relative on these models.


- `initial.safetensors`: the state dict (less `num_batches_tracked`) before the step;
- `batch.safetensors`: `images` `[B, 3, H, W]` in [-1, 1], `targets` `[B, K]` in {0, 1};
- `expected.safetensors`: `loss` `[1]`, `grad.<name>` of every trained tensor, and
  `after.<name>` of every state-dict tensor after the step (running statistics included).

A reduced DeepLabV3 (torchvision's ResNet blocks with dilation, `IntermediateLayerGetter`,
`ASPP`, the `DeepLabHead` layout with a 16-wide head) is written the same way under
`deeplab/`, its loss `CrossEntropyLoss(ignore_index=0)` on `labels` `[B, H, W]` (stored as
float32), the ASPP's dropout off (the Rust trainer's `--dropout 0`: random masks cannot match).
"""
import os
import sys

import torch
import torchvision
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from steex_reference import DecisionDensenetModel, DecisionResnetModel, randomize_bn  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "train_step")


def state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def fixture(name, model, seed, b=4, h=32, w=32, classes=None):
    out = os.path.join(ROOT, name)
    os.makedirs(out, exist_ok=True)
    randomize_bn(model, seed)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(b, 3, h, w, generator=gen) * 2 - 1
    initial = state(model)
    if classes is None:
        k = model(images).shape[1]
        targets = (torch.rand(b, k, generator=gen) > 0.5).float()
        loss_fn = torch.nn.BCEWithLogitsLoss()
        forward = model
    else:
        model(images)
        targets = torch.randint(0, classes, (b, h, w), generator=gen)
        ce = torch.nn.CrossEntropyLoss(ignore_index=0)
        loss_fn = lambda y, t: ce(y, t.long())  # noqa: E731
        forward = lambda x: model(x)["out"]  # noqa: E731
    # Running statistics were updated by the forward above: restart from `initial`.
    model.load_state_dict(initial, strict=False)
    model = model.double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    opt.zero_grad()
    loss = loss_fn(forward(images.double()), targets.double() if classes is None else targets)
    loss.backward()
    grads = {f"grad.{n}": p.grad.detach().float().contiguous() for n, p in model.named_parameters()}
    for n, g in grads.items():
        assert g.abs().max() > 0, f"{name}: zero gradient {n}"
    opt.step()
    after = {f"after.{n}": t.float() for n, t in state(model).items()}
    loss = loss.float()
    save_file(initial, os.path.join(out, "initial.safetensors"))
    save_file({"images": images.contiguous(), "targets": targets.float().contiguous()},
              os.path.join(out, "batch.safetensors"))
    save_file({"loss": loss.detach().reshape(1), **grads, **after},
              os.path.join(out, "expected.safetensors"))
    print(f"{name}: loss {loss.item():.6f}, {sum(t.numel() for t in initial.values())} values")


def main():
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(31)
    fixture("densenet", DecisionDensenetModel(3, growth_rate=4, block_config=(2, 2),
                                              num_init_features=8, bn_size=2), 31)
    BB = torchvision.models.resnet
    torch.manual_seed(32)
    fixture("resnet_basic", DecisionResnetModel(2, block=BB.BasicBlock, layers=[1, 1, 1, 1],
                                                width=4), 32)
    torch.manual_seed(33)
    fixture("resnet_bottleneck", DecisionResnetModel(4, block=BB.Bottleneck, layers=[1, 1, 1, 1],
                                                     width=4), 33, b=3, h=48, w=32)
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3
    from steex_reference import ReducedResNet
    torch.manual_seed(34)
    width, head, classes = 2, 16, 5
    bb = ReducedResNet(BB.Bottleneck, [1, 1, 1, 1], width, replace_stride_with_dilation=[False, True, True])
    aspp = ASPP(8 * width * 4, [12, 24, 36], head)
    aspp.project[3].p = 0.0  # dropout off
    cls = torch.nn.Sequential(aspp, torch.nn.Conv2d(head, head, 3, padding=1, bias=False),
                              torch.nn.BatchNorm2d(head), torch.nn.ReLU(), torch.nn.Conv2d(head, classes, 1))
    model = DeepLabV3(IntermediateLayerGetter(bb, return_layers={"layer4": "out"}), cls, None)
    # Batch 4: the image-pooling branch normalises a 1x1 map over the batch, and over two
    # images its variance is one difference, a float32 coin toss for the gradient.
    fixture("deeplab", model, 34, b=4, h=32, w=32, classes=classes)


if __name__ == "__main__":
    main()
