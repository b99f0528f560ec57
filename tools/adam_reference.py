"""Prints torch.optim.Adam's iterates on a fixed gradient sequence (lr 0.05, float32), the
expected values of `crates/steex-explain/src/adam.rs`' multi-step test (bias correction
after the first step).

    tools/.venv/bin/python tools/adam_reference.py
"""
import torch

x = torch.tensor([1.0, -0.5, 2.0], requires_grad=True)
opt = torch.optim.Adam([x], lr=0.05)
for t in range(1, 7):
    g = torch.tensor([0.3 * t, -1.0 / t, 0.01 * (-1) ** t])
    opt.zero_grad()
    x.grad = g.clone()
    opt.step()
    print(f"step {t}: [{', '.join(repr(float(v)) for v in x.detach())}]")
