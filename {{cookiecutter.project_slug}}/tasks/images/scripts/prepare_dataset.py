"""Put an image-classification dataset into dataset/: a synthetic one (offline) or yours.

    python scripts/prepare_dataset.py synthetic [--train-size N] [--test-size M] [--seed S]
    python scripts/prepare_dataset.py synthetic --layout folders   # as many competitions ship
    python scripts/prepare_dataset.py rawdata [ARCHIVE]     # your files, from rawdata/
    python scripts/prepare_dataset.py kaggle COMPETITION    # a competition's files, via rawdata/

All write a layout src/data.py reads: train.csv (id,label), train/<id>.png, test/<id>.png; or,
with --layout folders, train/<class name>/<id>.<ext> and test/<id>.<ext>.
The synthetic images are 32x32 RGB: 10 classes, each a shape (disc, square, triangle, cross, ring)
in a colour (red, blue), at a random place and size, on noise. In the folders layout the classes
are named with a space ("red disc") and the images come as competitions ship them: sizes from
24 to 64 pixels a side, not always square, as RGB or palette PNGs, RGBA PNGs or JPEGs.
`rawdata` unpacks an archive (.zip, .tar.gz, ...) that you put in rawdata/, e.g. what a Kaggle
competition gives you, into dataset/; `kaggle` downloads it there first (pip install kaggle).
"""

import argparse
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
import numpy as np

import options
from launcher import project, rawdata, synthetic

MAX_IMAGES = 1_000_000


def write_split(folders, images, names, mixed=False, seed=0):
    """Each image as <folder>/<name>.png; `mixed`: resized, in one of several modes and formats."""
    from PIL import Image  # comes with torchvision

    rng = np.random.default_rng(seed)
    for folder, image, name in zip(folders, images, names, strict=True):
        folder.mkdir(parents=True, exist_ok=True)
        picture, suffix = Image.fromarray(image), ".png"
        if mixed:
            picture = picture.resize(tuple(int(side) for side in rng.integers(24, 65, 2)))
            kind = rng.integers(4)
            if kind == 1:
                picture = picture.convert("P", palette=Image.Palette.ADAPTIVE)
            elif kind == 2:
                picture = picture.convert("RGBA")
            elif kind == 3:
                suffix = ".jpg"
        picture.save(folder / f"{name}{suffix}")


def prepare_synthetic(out, train_size, test_size, seed, layout="csv"):
    # Each split draws from its own stream, so no test image copies a training image.
    images, labels = synthetic.synthetic_images(train_size, seed=[seed, 0])
    ids = [f"train{index:06d}" for index in range(train_size)]
    mixed = layout == "folders"
    out.mkdir(parents=True, exist_ok=True)
    if mixed:
        folders = [out / "train" / synthetic.CLASSES[label].replace("-", " ") for label in labels]
    else:
        folders = [out / "train"] * train_size
        rows = "".join(
            f"{id_},{synthetic.CLASSES[label]}\n" for id_, label in zip(ids, labels, strict=True)
        )
        (out / "train.csv").write_text("id,label\n" + rows)
    write_split(folders, images, ids, mixed, seed=[seed, 2])
    test_images, _ = synthetic.synthetic_images(test_size, seed=[seed, 1])
    test_ids = [f"test{index:06d}" for index in range(test_size)]
    write_split([out / "test"] * test_size, test_images, test_ids, mixed, seed=[seed, 3])
    print(
        f"wrote synthetic images ({train_size} train, {test_size} test, seed {seed}, "
        f"{layout} layout) to {out}"
    )


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--out",
        type=Path,
        default=project.DATASET_DIR,
        help="folder that receives train.csv, train/ and test/ (default: the project's dataset/)",
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sources = parser.add_subparsers(dest="source", required=True)
    synthetic = sources.add_parser(
        "synthetic", parents=[common], help="draw coloured shapes in 10 classes (offline)"
    )
    whole_number = options.whole_number  # the checks train.py's options use
    size = whole_number(1, MAX_IMAGES)
    synthetic.add_argument("--train-size", type=size, default=10000, help="labelled images")
    synthetic.add_argument("--test-size", type=size, default=2000, help="test images")
    synthetic.add_argument(
        "--seed", type=whole_number(0, 2**32 - 1), default=0, help="same seed, same images"
    )
    synthetic.add_argument(
        "--layout",
        choices=["csv", "folders"],
        default="csv",
        help="csv: train.csv + train/<id>.png (default); folders: train/<class name>/ of images "
        "of mixed sizes, modes and formats",
    )
    rawdata.add_sources(sources, common)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.source == "synthetic":
            prepare_synthetic(args.out, args.train_size, args.test_size, args.seed, args.layout)
        else:
            rawdata.prepare(args)
    except OSError as error:  # --out is a file, a folder that cannot be written, a full disk
        where = f": {error.filename}" if error.filename else ""
        sys.exit(f"error: {error.strerror or error}{where}; run again once that is fixed")
    except KeyboardInterrupt:
        sys.exit("interrupted: the dataset is incomplete; run the same command again")


if __name__ == "__main__":
    main()
