#!/usr/bin/env python3
"""Image preprocessing references from transformers' own (PIL-based) processors: CLIPImageProcessor,
LlavaImageProcessor with LLaVA-1.5's pad-to-square, and LlavaNextImageProcessor (anyres).

Command that made the committed fixtures (from the repository root):

    /work/venv/bin/python scripts/make_image_fixtures.py --shared ../shared/data --fixtures tests/fixtures

Real photos are copied from the shared data (public domain / CC0, see tests/fixtures/images/README.md); odd
sizes and modes are generated here. Processors run at the tiny fixtures' 56-px size (same code paths as 336)
and, for one photo, at CLIP ViT-L/14-336's full size. References are stored as f16 (the comparison tolerance
is 2e-2).
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPImageProcessor, LlavaImageProcessor, LlavaNextImageProcessor

TINY_PINPOINTS = [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]
FULL_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def processors(size, pinpoints):
    common = dict(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_mean=MEAN,
                  image_std=STD)
    return (CLIPImageProcessor(**common), LlavaImageProcessor(do_pad=True, **common),
            LlavaNextImageProcessor(image_grid_pinpoints=pinpoints, **common))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--fixtures", default="tests/fixtures")
    a = ap.parse_args()
    imgdir = Path(a.fixtures) / "images"
    imgdir.mkdir(parents=True, exist_ok=True)
    for f in ["grace_hopper.jpg", "rocket.jpg", "chelsea.png"]:
        shutil.copyfile(Path(a.shared) / "images" / f, imgdir / f)
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:50, 0:1000]
    wide = np.stack([(x % 256), (y * 5) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)
    Image.fromarray(wide).save(imgdir / "wide_1000x50.png")  # width 1000, height 50
    Image.fromarray(np.ascontiguousarray(wide.transpose(1, 0, 2))).save(imgdir / "tall_50x1000.png")
    Image.fromarray(np.array([[[200, 30, 90]]], dtype=np.uint8)).save(imgdir / "pixel_1x1.png")
    rgba = np.concatenate([rng.integers(0, 256, (40, 70, 3)), rng.integers(0, 256, (40, 70, 1))], -1).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(imgdir / "rgba_70x40.png")
    gray = (np.add.outer(np.arange(33), np.arange(90)) * 3 % 256).astype(np.uint8)
    Image.fromarray(gray, "L").save(imgdir / "gray_90x33.png")

    tiny = processors(56, TINY_PINPOINTS)
    tensors, meta = {}, {}
    names = sorted(p.name for p in imgdir.iterdir() if p.suffix in (".png", ".jpg"))
    for name in names:
        img = Image.open(imgdir / name)
        key = Path(name).stem
        clip, llava, nxt = tiny
        tensors[f"{key}.clip"] = clip(images=img, return_tensors="pt", input_data_format="channels_last")["pixel_values"][0]
        tensors[f"{key}.llava15"] = llava(images=img, return_tensors="pt", input_data_format="channels_last")["pixel_values"][0]
        n = nxt(images=img, return_tensors="pt", input_data_format="channels_last")
        tensors[f"{key}.next"] = n["pixel_values"][0]
        tensors[f"{key}.next_image_sizes"] = n["image_sizes"][0]
        full_next = processors(336, FULL_PINPOINTS)[2](images=img, return_tensors="pt", input_data_format="channels_last")
        meta[key] = {"mode": img.mode, "width": img.width, "height": img.height,
                     "next_tiles_336": int(full_next["pixel_values"].shape[1]),
                     "next_image_sizes_336": full_next["image_sizes"][0].tolist()}
    full_clip = processors(336, FULL_PINPOINTS)[0]
    tensors["grace_hopper.clip336"] = full_clip(images=Image.open(imgdir / "grace_hopper.jpg"), input_data_format="channels_last",
                                                return_tensors="pt")["pixel_values"][0]
    out = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(out, str(Path(a.fixtures) / "reference" / "preprocess.safetensors"),
              metadata={"reference": json.dumps({"images": meta, "mean": MEAN, "std": STD,
                                                 "tiny_pinpoints": TINY_PINPOINTS}, sort_keys=True)})
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
