"""Writes tests/fixtures/dtypes/: a state dict saved by torch with float16, bfloat16,
float64 and int64 tensors and with views sharing one storage (offsets, strides, a transpose,
a stepped slice, a zero stride from `expand`), in both serialisations, and the exact values
PyTorch holds for each tensor.

    tools/.venv/bin/python tools/make_dtype_fixtures.py

expected.json, per tensor: dtype, shape, `bytes` (the row-major little-endian bytes of
`t.contiguous()`, hex) and `f32` (the bytes of `t.float()`, hex; absent for integers), so the
reader is checked bit for bit, not within a tolerance.
"""
import collections
import json
import os

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "dtypes")


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(5)
    sd = collections.OrderedDict()
    # float16: normal, subnormal, the largest finite, negative zero, values that round.
    sd["half"] = torch.tensor([[1.0, -2.5, 65504.0], [6.0e-8, -0.0, 0.1]], dtype=torch.float16)
    sd["bfloat16"] = (torch.randn(2, 3, generator=g) * 100).to(torch.bfloat16)
    # float64 values that float32 cannot hold exactly.
    sd["double"] = torch.tensor([[1.0 / 3.0, 1e-300], [2.0 ** 60 + 1.0, -1.0 / 7.0]], dtype=torch.float64)
    sd["long"] = torch.tensor([-(2 ** 40), 0, 7], dtype=torch.int64)
    # Views into one float32 storage of 24 values.
    base = torch.randn(24, generator=g)
    sd["base"] = base
    sd["offset_slice"] = base[4:10]                 # offset 4
    sd["column"] = base.view(4, 6)[:, 1]            # stride 6, offset 1
    sd["transposed"] = base[:12].view(3, 4).t()     # strides (1, 4)
    sd["stepped"] = base[1::3]                      # stride 3, offset 1
    sd["expanded"] = base[5:6].expand(3, 2)         # strides (0, 0)
    # A view into a float16 storage, and one into a float64 storage.
    hbase = torch.randn(12, generator=g).half()
    sd["half_base"] = hbase
    sd["half_view"] = hbase.view(3, 4)[1:, ::2]     # offset 4, strides (4, 2)
    dbase = torch.randn(8, generator=g, dtype=torch.float64)
    sd["double_view"] = dbase.view(2, 4).t()[1:]    # offset 1, strides (1, 4)
    torch.save(sd, f"{OUT}/dtypes.pth")
    torch.save(sd, f"{OUT}/dtypes_legacy.pth", _use_new_zipfile_serialization=False)
    # Storage sharing survives the round trip in torch itself (one storage, not copies).
    back = torch.load(f"{OUT}/dtypes.pth", weights_only=True)
    assert back["column"].untyped_storage().data_ptr() == back["base"].untyped_storage().data_ptr()
    expected = {}
    for k, t in sd.items():
        e = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
             "stride": list(t.stride()), "storage_offset": t.storage_offset(),
             "bytes": t.contiguous().view(torch.uint8).numpy().tobytes().hex()
             if t.dtype != torch.bfloat16 else
             t.contiguous().view(torch.int16).numpy().tobytes().hex()}
        if t.is_floating_point():
            e["f32"] = t.float().contiguous().numpy().tobytes().hex()
        expected[k] = e
    json.dump(expected, open(f"{OUT}/expected.json", "w"), indent=1)
    for k, e in expected.items():
        print(f"{k}: {e['dtype']} {e['shape']} stride {e['stride']} offset {e['storage_offset']}")


if __name__ == "__main__":
    main()
