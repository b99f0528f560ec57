"""Writes the fuzzers' seed corpora under tests/fixtures/fuzz/ (small files, committed).

    /work/venv/bin/python tools/make_fuzz_corpus.py      # or any Python with torch + numpy

- checkpoint/: tiny PyTorch checkpoints in both `torch.save` serialisations (zip and legacy):
  a training checkpoint with optimiser state, a bare state dict with spectral-norm
  parameters, float16/float64/int64 tensors, views sharing one storage, a non-dict root,
  plus copies of the malicious fixtures.
- npy/: `.npy` files of every flavour `np.save` writes (dtypes, byte orders, Fortran order,
  0-d, empty, version 2/3 headers).
- safetensors/: written afterwards by `weights-convert densenet|resnet` on the tiny
  checkpoints in checkpoint/ (see the end of this script's output).
"""
import collections
import os
import shutil
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from steex_reference import DecisionDensenetModel, DecisionResnetModel  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
FUZZ = os.path.join(ROOT, "fuzz")


def save_both(obj, path):
    torch.save(obj, path)
    stem, ext = os.path.splitext(path)
    torch.save(obj, f"{stem}_legacy{ext}", _use_new_zipfile_serialization=False)


def checkpoints(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(5)
    w = torch.randn(2, 1, 3, 3)
    sd = collections.OrderedDict()
    sd["conv.weight"] = w
    sd["conv.bias"] = torch.randn(2)
    sd["bn.running_mean"] = torch.randn(2)
    sd["bn.num_batches_tracked"] = torch.tensor(7)
    opt = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.randn(2)}},
           "param_groups": [{"lr": 1e-4, "params": [0]}]}
    save_both({"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": opt, "loss": 0.25},
              f"{out}/training.pth")
    # Spectral norm as SEAN saves it: weight_orig, weight_u, weight_v.
    sn = collections.OrderedDict()
    sn["conv_0.weight_orig"] = torch.randn(2, 3, 1, 1)
    sn["conv_0.weight_u"] = torch.nn.functional.normalize(torch.randn(2), dim=0)
    sn["conv_0.weight_v"] = torch.nn.functional.normalize(torch.randn(3), dim=0)
    sn["conv_0.bias"] = torch.zeros(2)
    save_both(sn, f"{out}/spectral.pth")
    # Dtypes and views into one storage (offsets and strides).
    base = torch.arange(24, dtype=torch.float32)
    views = collections.OrderedDict()
    views["a"] = base[4:10]
    views["b"] = base.view(4, 6)[:, 1]
    views["half"] = torch.randn(3).half()
    views["double"] = torch.randn(2, 2).double()
    views["long"] = torch.arange(3)
    save_both(views, f"{out}/views.pth")
    save_both([torch.ones(2)], f"{out}/list_root.pth")
    for f in sorted(os.listdir(f"{ROOT}/malicious")):
        shutil.copy(f"{ROOT}/malicious/{f}", f"{out}/malicious_{f}")
    # Tiny decision models: converted to safetensors seeds by weights-convert.
    torch.manual_seed(6)
    dn = DecisionDensenetModel(3, growth_rate=2, block_config=(1, 1, 1, 1), num_init_features=4,
                               bn_size=1)
    torch.save({"model_state_dict": dn.state_dict()}, f"{out}/tiny_densenet.tar")
    rn = DecisionResnetModel(3, block=torchvision.models.resnet.BasicBlock, layers=[1, 1, 1, 1],
                             width=2)
    torch.save({"model_state_dict": rn.state_dict()}, f"{out}/tiny_resnet.tar")


def npys(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(3)
    np.save(f"{out}/f32_image.npy", rng.uniform(-1, 1, (1, 3, 4, 4)).astype(np.float32))
    np.save(f"{out}/f32_codes.npy", rng.normal(size=(1, 3, 4)).astype(np.float32))
    np.save(f"{out}/f64.npy", rng.normal(size=(2, 3)))
    np.save(f"{out}/f32_big_endian.npy", rng.normal(size=(5,)).astype(">f4"))
    np.save(f"{out}/f32_fortran.npy", np.asfortranarray(rng.normal(size=(2, 3)).astype(np.float32)))
    np.save(f"{out}/i32.npy", np.arange(6, dtype=np.int32).reshape(2, 3))
    np.save(f"{out}/u8.npy", np.arange(6, dtype=np.uint8))
    np.save(f"{out}/scalar.npy", np.float32(1.5))
    np.save(f"{out}/empty.npy", np.zeros((0, 3), dtype=np.float32))
    np.save(f"{out}/nan.npy", np.array([1.0, np.nan, np.inf], dtype=np.float32))
    a = rng.normal(size=(2, 2)).astype(np.float32)
    with open(f"{out}/v2.npy", "wb") as f:
        np.lib.format.write_array(f, a, version=(2, 0))
    with open(f"{out}/v3.npy", "wb") as f:
        np.lib.format.write_array(f, a, version=(3, 0))


def main():
    checkpoints(f"{FUZZ}/checkpoint")
    npys(f"{FUZZ}/npy")
    print("now: weights-convert densenet --input tests/fixtures/fuzz/checkpoint/tiny_densenet.tar "
          "--out tests/fixtures/fuzz/safetensors/densenet.safetensors --preset celeba (and resnet)")


if __name__ == "__main__":
    main()
