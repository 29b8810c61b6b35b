"""Rebuilds data/lfw_demo/ (the demo's bundled faces) from the full LFW copy.

    python data/make_subset.py ../shared/data/lfw data/lfw_demo --min_images 10

Training identities with at least ``--min_images`` images, and every held-out
image that ``pairs_heldout.txt`` names: the central ``--crop`` pixels of the
144x144 LFW image, resized to ``--size`` (JPEG q90).
"""
import argparse
import os
import shutil

from PIL import Image

QUALITY = 90


def pair_images(pairs_path):
    """The (name, index) of every image an LFW-format pairs file names."""
    with open(pairs_path) as f:
        rows = [line.split() for line in f.read().splitlines()[1:] if line.strip()]
    names = set()
    for r in rows:
        names.update([(r[0], int(r[1])), (r[0], int(r[2]))] if len(r) == 3
                     else [(r[0], int(r[1])), (r[2], int(r[3]))])
    return names


def copy_resized(src, dst, size, crop):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    image = Image.open(src)
    margin = (image.width - crop) // 2
    image = image.crop((margin, margin, margin + crop, margin + crop))
    image.resize((size, size), Image.BILINEAR).save(dst, "JPEG", quality=QUALITY)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("lfw_root")
    ap.add_argument("out")
    ap.add_argument("--min_images", type=int, default=10)
    ap.add_argument("--size", type=int, default=112, help="output side in pixels")
    ap.add_argument("--crop", type=int, default=144, help="central square kept, in source pixels")
    args = ap.parse_args()
    train = os.path.join(args.lfw_root, "train")
    for person in sorted(os.listdir(train)):
        files = sorted(os.listdir(os.path.join(train, person)))
        if len(files) >= args.min_images:
            for f in files:
                copy_resized(os.path.join(train, person, f), os.path.join(args.out, "train", person, f),
                             args.size, args.crop)
    pairs = os.path.join(args.lfw_root, "pairs_heldout.txt")
    for name, i in sorted(pair_images(pairs)):
        rel = os.path.join(name, f"{name}_{i:04d}.jpg")
        copy_resized(os.path.join(args.lfw_root, "heldout", rel), os.path.join(args.out, "heldout", rel),
                     args.size, args.crop)
    shutil.copy(pairs, os.path.join(args.out, "pairs_heldout.txt"))


if __name__ == "__main__":
    main()
