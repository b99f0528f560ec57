"""Writes `tests/fixtures/prepare/bdd`: a small fake BDD100k segmentation download in the
layout STEEX reads (`bdd100k/seg/images/{train,val}/<stem>.jpg`,
`bdd100k/seg/labels/{train,val}/<stem>_train_id.png`: 8-bit grey, ids 0-18, 255 = unknown),
and `expected/{train,val}/<stem>.png`: the generator's label ids, as STEEX's
`data/pix2pix_dataset.py` makes them (`to_tensor(label) * 255.0`, then
`label_tensor[label_tensor == 255] = opt.label_nc` with `label_nc = 19`, then
`data['label'].long()` in `models/pix2pix_model.py`), run on the same files; and
`expected_segmenter/{train,val}/<stem>.png`: the published segmenter's training ids, as
`data/BDDDataset_for_deeplab.py` makes them (`label * 255`, `label += 1.0`,
`torch.where(label > 255, 0, label)`).

BDD-OIA: `oia/data/*.jpg` and `oia/{train,val}_25k_images_actions.json` (ids that are not
positions, a "confuse" image, an image without a file, four-action annotations), and
`expected_oia/{train,val}.csv`: the images and first four actions that the published
`data/bdd_dataset.py` (`BDDOIADataset`) keeps, ported line for line.

Images: train a, b (every id and 255), c (an id 40: STEEX has no class for it, refused),
d (no label file: refused); val e, f. `failed.json` lists the refused images.

    tools/.venv/bin/python tools/make_bdd_fixtures.py
"""
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as TR

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "prepare", "bdd")
LABEL_NC = 19  # BDDDataset_for_deeplab.py / the published BDD generator: 19 classes + unknown
W, H = 32, 16


# ---- pix2pix_dataset.py's label lines, line for line (the resize is the loader's, later) ----
def steex_label(label_path, label_nc=LABEL_NC):
    label = Image.open(label_path)
    label_tensor = TR.functional.to_tensor(label) * 255.0
    label_tensor[label_tensor == 255] = label_nc  # 'unknown' is opt.label_nc
    label_tensor = label_tensor.long()  # pix2pix_model.py: data['label'] = data['label'].long()
    return label_tensor[0].numpy()


def steex_segmenter_label(label_path):
    # BDDDataset_for_deeplab.py: to_tensor(label), then label * 255, += 1, > 255 -> 0
    label = TR.functional.to_tensor(Image.open(label_path))
    label = label * 255
    label += 1.0
    label = torch.where(label > 255, torch.FloatTensor([0.0]), label)
    return label.round().long()[0].numpy()


# ---- bdd_dataset.py's BDDOIADataset.__init__, the lines that choose images and targets ----
def oia_kept(image_root, gt_root):
    with open(gt_root) as json_file:
        data = json.load(json_file)
    data['images'] = sorted(data['images'], key=lambda k: k['file_name'])
    action_annotations = data['annotations']
    img_names, targets = [], []
    for i, img in enumerate(data['images']):
        ind = img['id']
        if len(action_annotations[ind]['category']) == 4 or action_annotations[ind]['category'][4] == 0:
            file_name = os.path.join(image_root, img['file_name'])
            if os.path.isfile(file_name):
                img_names.append(img['file_name'])
                targets.append(torch.FloatTensor(torch.LongTensor(action_annotations[ind]['category']).float())[0:4])
    return img_names, targets


def make_oia(rng):
    root = os.path.join(OUT, "oia")
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    os.makedirs(os.path.join(OUT, "expected_oia"), exist_ok=True)
    splits = {"train": ["t3", "t1", "t4", "t2", "t5"], "val": ["v2", "v1"]}
    for split, names in splits.items():
        n = len(names)
        perm = rng.permutation(n)  # image i's annotation is annotations[perm[i]]
        images, annotations = [], [None] * n
        for i, name in enumerate(names):
            images.append({"file_name": f"{name}.jpg", "id": int(perm[i])})
            cat = [int(v) for v in rng.integers(0, 2, 4)]
            if name == "t4":
                cat = cat + [1]  # confuse: left out
            elif name != "t2":
                cat = cat + [0]  # t2 has four actions only
            annotations[int(perm[i])] = {"category": cat}
            if name != "t5":  # t5 has no file: left out
                img = rng.integers(0, 256, (4, 8, 3), dtype=np.uint8)
                Image.fromarray(img).save(os.path.join(data, f"{name}.jpg"), quality=85)
        gt = os.path.join(root, f"{split}_25k_images_actions.json")
        with open(gt, "w") as f:
            json.dump({"images": images, "annotations": annotations}, f)
        names_kept, targets = oia_kept(data, gt)
        with open(os.path.join(OUT, "expected_oia", f"{split}.csv"), "w") as f:
            f.write("file,move_forward,stop,turn_left,turn_right\n")
            for name, t in zip(names_kept, targets):
                f.write(name + "," + ",".join(str(int(v)) for v in t.tolist()) + "\n")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    rng = np.random.default_rng(26)
    root = os.path.join(OUT, "bdd100k", "seg")
    ids = np.array(list(range(19)) + [255], dtype=np.uint8)
    plan = {"train": ["a", "b", "c", "d"], "val": ["e", "f"]}
    failed = []
    for split, stems in plan.items():
        img_dir = os.path.join(root, "images", split)
        lab_dir = os.path.join(root, "labels", split)
        exp_dir = os.path.join(OUT, "expected", split)
        seg_dir = os.path.join(OUT, "expected_segmenter", split)
        for d in (img_dir, lab_dir, exp_dir, seg_dir):
            os.makedirs(d, exist_ok=True)
        for stem in stems:
            img = rng.integers(0, 256, (H // 4, W // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
            Image.fromarray(img).save(os.path.join(img_dir, f"{stem}.jpg"), quality=85)
            if stem == "d":
                failed.append({"image": f"{split}/{stem}", "reason": "no label file"})
                continue
            if stem == "b":
                lab = np.resize(ids, H * W).reshape(H, W)  # every id and 255, in order
            else:
                lab = rng.choice(ids, (H, W))
            if stem == "c":
                lab[3, 5] = 40
                failed.append({"image": f"{split}/{stem}", "reason": "id 40"})
            path = os.path.join(lab_dir, f"{stem}_train_id.png")
            Image.fromarray(lab, "L").save(path)
            if stem != "c":
                out = steex_label(path)
                assert out.max() <= LABEL_NC and out.min() >= 0
                Image.fromarray(out.astype(np.uint8), "L").save(os.path.join(exp_dir, f"{stem}.png"))
                seg = steex_segmenter_label(path)
                assert seg.max() <= LABEL_NC and seg.min() >= 0
                Image.fromarray(seg.astype(np.uint8), "L").save(os.path.join(seg_dir, f"{stem}.png"))
    with open(os.path.join(OUT, "failed.json"), "w") as f:
        json.dump(failed, f, indent=1)
        f.write("\n")
    make_oia(rng)


if __name__ == "__main__":
    main()
