"""Writes `tests/fixtures/resize`: query images and label maps of other sizes than the
models', and Pillow's resizes of them as the published loaders do them
(`torchvision.transforms.Resize(size, Image.BICUBIC)` on the image,
`Resize(size, Image.NEAREST)` on the label map, both on PIL images).

- `face_1024.png` (RGB 1024x1024) and `face_mask_512.png` (labels 512x512, the ids the
  `sean_sq` generator fixture has), as CelebAMask-HQ ships them; resized to 64x64 (the
  fixture generator's size) and 256x256 (the celebamhq models' size).
- `odd.png` (RGB 97x61) and `odd_mask.png` (49x31, the same aspect ratio), resized down to
  40x25 and up to 150x95, to exercise uneven scales in both directions.

References are PNGs named `<input stem>_to_<W>x<H>.png`; `sizes.json` lists every pair.

    tools/.venv/bin/python tools/make_resize_fixtures.py
"""
import json
import os

import numpy as np
from PIL import Image
from torchvision import transforms as TR

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "resize")


def face_image(size):
    """Smooth shading with hard-edged shapes (so that the kernel's overshoot is clipped)."""
    y, x = np.mgrid[0:size, 0:size] / size
    r = 128 + 90 * np.sin(6.1 * x + 1.3) * np.cos(4.7 * y)
    g = 100 + 80 * np.cos(9.3 * x * y + 0.4)
    b = 60 + 150 * y * (1 - x)
    img = np.stack([r, g, b], -1)
    shapes = [((0.5, 0.45), (0.3, 0.38), (235, 190, 160)), ((0.38, 0.38), (0.05, 0.03), (20, 30, 200)),
              ((0.62, 0.38), (0.05, 0.03), (20, 30, 200)), ((0.5, 0.68), (0.12, 0.035), (200, 20, 40)),
              ((0.5, 0.12), (0.4, 0.1), (30, 20, 10))]
    for (cx, cy), (rx, ry), col in shapes:
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1
        img[inside] = 0.7 * np.array(col) + 0.3 * img[inside]
    img[(x * size).astype(int) % 97 == 0] = (255, 255, 255)
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


def face_mask(size):
    """Regions with the `sean_sq` fixture's ids (0 background, 1 skin, 2 nose, 4 eye,
    5 eye, 10 mouth, 13 hair, 17 cloth)."""
    y, x = np.mgrid[0:size, 0:size] / size
    m = np.zeros((size, size), np.uint8)
    m[y > 0.85] = 17
    ell = lambda cx, cy, rx, ry: ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1
    m[ell(0.5, 0.45, 0.3, 0.38)] = 1
    m[ell(0.5, 0.12, 0.4, 0.1)] = 13
    m[ell(0.38, 0.38, 0.05, 0.03)] = 4
    m[ell(0.62, 0.38, 0.05, 0.03)] = 5
    m[ell(0.5, 0.55, 0.03, 0.08)] = 2
    m[ell(0.5, 0.68, 0.12, 0.035)] = 10
    return Image.fromarray(m, "L")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(26)
    inputs = {
        "face_1024.png": face_image(1024),
        "face_mask_512.png": face_mask(512),
        "odd.png": Image.fromarray(rng.integers(0, 256, (61, 97, 3), dtype=np.uint8), "RGB"),
        "odd_mask.png": Image.fromarray(rng.integers(0, 19, (31, 49), dtype=np.uint8), "L"),
    }
    pairs = [("face_1024.png", 64, 64), ("face_1024.png", 256, 256), ("face_mask_512.png", 64, 64),
             ("face_mask_512.png", 256, 256), ("odd.png", 40, 25), ("odd.png", 150, 95),
             ("odd_mask.png", 40, 25), ("odd_mask.png", 150, 95)]
    for name, img in inputs.items():
        img.save(os.path.join(OUT, name))
    listing = []
    for name, w, h in pairs:
        img = Image.open(os.path.join(OUT, name))
        method = Image.NEAREST if img.mode == "L" else Image.BICUBIC
        out = TR.Resize((h, w), interpolation=method)(img)
        assert out.size == (w, h)
        ref = f"{name[:-4]}_to_{w}x{h}.png"
        out.save(os.path.join(OUT, ref))
        listing.append({"input": name, "width": w, "height": h, "reference": ref,
                        "kind": "mask" if img.mode == "L" else "image"})
    with open(os.path.join(OUT, "sizes.json"), "w") as f:
        json.dump(listing, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total / 1e3:.0f} kB, to {OUT}")


if __name__ == "__main__":
    main()
