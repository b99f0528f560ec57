"""Writes `tests/fixtures/prepare`: small fake copies of the CelebAMask-HQ and CelebA
download layouts, and what the published preprocessing makes of them.

CelebAMask-HQ (`celebamaskhq/CelebAMask-HQ/`): images 0-5 and 2001 (`CelebA-HQ-img/{k}.jpg`),
their per-part masks (`CelebAMask-HQ-mask-anno/{k // 2000}/{k:05}_{part}.png`): image 0 every
part, 1 overlapping parts and missing ones, 2 parts saved as RGB (red where blue is zero:
not a part for OpenCV's first channel), palette and grey-alpha PNGs, 3 no part at all, 4 a
256x256 part (refused), 5 an undecodable part (refused), 2001 in folder 1; the mapping to
CelebA (with an image absent from the folder), the attribute file, and CelebA's partition
file (`celebamaskhq/list_eval_partition.txt`, outside the root). `celebamaskhq/g_mask/` is
the output of `g_mask` below, a line-for-line port of the published
`util/CelebAMask-HQ/Data_preprocessing/g_mask.py` (with `cv2.imread`/`cv2.imwrite` done by
Pillow the way OpenCV does them: BGR channel order, alpha dropped, 8-bit grey written);
`failed.json` lists the images the original would stop at (it has no error handling).

CelebA (`celeba/img_align_celeba/`): four 178x218 JPEGs, a PNG, and a 120x140 image (too
small for the crop); `list_eval_partition.txt`; `celeba/reference/{stem}.png`:
torchvision's `CenterCrop(150)` then `Resize((128, 128), BICUBIC)` of each, as the
published `preprocess_celeba.py` applies them.

    tools/.venv/bin/python tools/make_prepare_fixtures.py
"""
import json
import os
import shutil

import numpy as np
from PIL import Image
from torchvision import transforms as TR

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "prepare")


# ---- cv2 as g_mask.py uses it, through Pillow ----------------------------------------
class cv2:  # noqa: N801 (stands in for the module)
    @staticmethod
    def imread(filename):
        """cv2.imread(filename) (IMREAD_COLOR): 8-bit BGR, alpha dropped; None when unreadable."""
        try:
            img = Image.open(filename)
            img.load()
        except Exception:
            return None
        return np.array(img.convert("RGB"))[:, :, ::-1]

    @staticmethod
    def imwrite(filename, img):
        """cv2.imwrite of a float64 single-channel array: saturated to 8 bits, grey PNG."""
        Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "L").save(filename)
        return True


def make_folder(path):
    if not os.path.exists(path):
        os.makedirs(path)


# ---- g_mask.py, line for line (paths and the image list as arguments) ------------------
def g_mask(folder_base, folder_save, ks):
    label_list = ['skin', 'nose', 'eye_g', 'l_eye', 'r_eye', 'l_brow', 'r_brow', 'l_ear', 'r_ear', 'mouth', 'u_lip',
                  'l_lip', 'hair', 'hat', 'ear_r', 'neck_l', 'neck', 'cloth']

    make_folder(folder_save)

    failed = []
    for k in ks:  # g_mask.py: for k in range(img_num)
        try:
            folder_num = int(k / 2000)
            im_base = np.zeros((512, 512))
            for idx, label in enumerate(label_list):
                filename = os.path.join(folder_base, str(folder_num), str(k).rjust(5, '0') + '_' + label + '.png')
                if (os.path.exists(filename)):
                    im = cv2.imread(filename)
                    im = im[:, :, 0]
                    im_base[im != 0] = (idx + 1)

            filename_save = os.path.join(folder_save, str(k) + '.png')
            cv2.imwrite(filename_save, im_base)
        except Exception as e:  # the original stops here
            failed.append({"image": k, "error": type(e).__name__})
    return failed


# ---- the fake CelebAMask-HQ -----------------------------------------------------------
PARTS = ['skin', 'nose', 'eye_g', 'l_eye', 'r_eye', 'l_brow', 'r_brow', 'l_ear', 'r_ear', 'mouth', 'u_lip',
         'l_lip', 'hair', 'hat', 'ear_r', 'neck_l', 'neck', 'cloth']


def blob(rng, size=512):
    """A 0/255 ellipse somewhere (parts overlap one another often)."""
    y, x = np.mgrid[0:size, 0:size]
    cx, cy = rng.uniform(100, 412, 2)
    rx, ry = rng.uniform(30, 160, 2)
    return ((((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) < 1).astype(np.uint8) * 255


def fake_celebamaskhq(root):
    rng = np.random.default_rng(2026)
    img_dir = os.path.join(root, "CelebA-HQ-img")
    anno = os.path.join(root, "CelebAMask-HQ-mask-anno")
    ks = [0, 1, 2, 3, 4, 5, 2001]
    for k in ks:
        os.makedirs(img_dir, exist_ok=True)
        face = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        Image.fromarray(face).save(os.path.join(img_dir, f"{k}.jpg"), quality=90)
    Image.new("RGB", (8, 8)).save(os.path.join(img_dir, "notes.bmp"))

    def part(k, name, arr, mode="L"):
        d = os.path.join(anno, str(k // 2000))
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"{k:05d}_{name}.png")
        if mode == "L":
            Image.fromarray(arr, "L").save(path)
        else:
            arr.save(path)

    for name in PARTS:  # image 0: every part
        part(0, name, blob(rng))
    for name in ["skin", "hair", "l_eye", "skin_dup", "mouth", "u_lip", "neck", "cloth", "hat"]:
        if name != "skin_dup":  # image 1: overlapping parts, most missing
            part(1, name, blob(rng))
    # Image 2: an RGB part with red where blue is 0 (not a part to OpenCV), blue elsewhere.
    rgb = np.zeros((512, 512, 3), np.uint8)
    rgb[100:300, 50:400, 0] = 255
    rgb[200:450, 200:300, 2] = 7
    part(2, "skin", Image.fromarray(rgb, "RGB"), mode="img")
    pal = Image.fromarray((blob(rng) > 0).astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 0, 200, 255] + [0] * 762)
    part(2, "hair", pal, mode="img")
    la = np.stack([blob(rng), np.full((512, 512), 128, np.uint8)], -1)
    part(2, "nose", Image.fromarray(la, "LA"), mode="img")
    part(2, "cloth", blob(rng))
    # Image 3: no part file. Image 4: a part of the wrong size. Image 5: an undecodable part.
    part(4, "skin", blob(rng))
    part(4, "hair", blob(rng, 256))
    part(5, "skin", blob(rng))
    with open(os.path.join(anno, "0", "00005_nose.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not a PNG")
    for name in ["skin", "l_brow", "r_brow", "hair"]:
        part(2001, name, blob(rng))
    # Mapping: images 0, 2, 2001 in CelebA's train; 1 at the first test index STEEX uses;
    # 3, 4, 5 beyond; 7 listed but absent from CelebA-HQ-img.
    orig = {0: 1000, 1: 162771, 2: 162769, 3: 170000, 4: 190000, 5: 5, 7: 12, 2001: 162770}
    with open(os.path.join(root, "CelebA-HQ-to-CelebA-mapping.txt"), "w") as f:
        f.write("idx orig_idx orig_file\n")
        for k in sorted(orig):
            f.write(f"{k} {orig[k]} {orig[k] + 1:06d}.jpg\n")
    with open(os.path.join(root, "CelebAMask-HQ-attribute-anno.txt"), "w") as f:
        f.write("8\nSmiling Young\n")
        for k in sorted(orig):
            f.write(f"{k}.jpg {1 if k % 2 else -1} 1\n")
    # CelebA's partition: train up to 162770 (1-based file names), val to 182637, test after.
    with open(os.path.join(os.path.dirname(root), "list_eval_partition.txt"), "w") as f:
        for k in sorted(orig):
            n = orig[k] + 1
            f.write(f"{n:06d}.jpg {0 if n <= 162770 else (1 if n <= 182637 else 2)}\n")
    return anno, ks


def fake_celeba(d):
    rng = np.random.default_rng(128)
    imgs = os.path.join(d, "img_align_celeba")
    ref = os.path.join(d, "reference")
    os.makedirs(imgs)
    os.makedirs(ref)
    y, x = np.mgrid[0:218, 0:178]
    names = []
    for i in range(4):
        a = np.stack([120 + 100 * np.sin(x / (9 + i) + i), 128 + 90 * np.cos(y / (13 + i)),
                      (x + y + 40 * i) % 256], -1)
        a[60 + 10 * i:120, 50:130] = rng.integers(0, 256, 3)
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(os.path.join(imgs, name), quality=95)
        names.append(name)
    a = rng.integers(0, 256, (219, 179, 3), dtype=np.uint8)  # odd margins: round half to even
    Image.fromarray(a).save(os.path.join(imgs, "000005.png"))
    names.append("000005.png")
    Image.new("RGB", (120, 140), (9, 9, 9)).save(os.path.join(imgs, "000006.jpg"))
    with open(os.path.join(d, "list_eval_partition.txt"), "w") as f:
        for i, p in enumerate([0, 0, 1, 2, 2, 0]):
            f.write(f"{i + 1:06d}.{'png' if i == 4 else 'jpg'} {p}\n")
    t = TR.Compose([TR.CenterCrop(150), TR.Resize((128, 128), Image.BICUBIC)])
    for name in names:
        img = Image.open(os.path.join(imgs, name))
        out = t(img)
        assert out.size == (128, 128)
        out.save(os.path.join(ref, name.rsplit(".", 1)[0] + ".png"))


def main():
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    root = os.path.join(OUT, "celebamaskhq", "CelebAMask-HQ")
    os.makedirs(root)
    anno, ks = fake_celebamaskhq(root)
    failed = g_mask(anno, os.path.join(OUT, "celebamaskhq", "g_mask"), ks)
    with open(os.path.join(OUT, "celebamaskhq", "failed.json"), "w") as f:
        json.dump(failed, f, indent=1)
    print("g_mask failed on", failed)
    fake_celeba(os.path.join(OUT, "celeba"))
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {total / 1e3:.0f} kB to {OUT}")


if __name__ == "__main__":
    main()
