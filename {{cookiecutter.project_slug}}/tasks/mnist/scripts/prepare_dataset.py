"""Put MNIST into dataset/ in torchvision's layout: a synthetic stand-in (offline) or the real one.

    python scripts/prepare_dataset.py synthetic [--train-size N] [--test-size M] [--seed S]
    python scripts/prepare_dataset.py mnist

Both write <out>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, which src/data.py reads
with torchvision.datasets.MNIST(download=False): real and synthetic data take the same code path.

The synthetic digits (launcher/synthetic.py) are drawn strokes under a random slant, rotation,
scale, position, wobble, stroke width and noise, so a CNN has to learn shapes, as on real MNIST.
"""

import argparse
import os
import struct
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
import numpy as np

import options
from launcher import project, synthetic

RAW_NAMES = [
    f"{split}-{kind}-ubyte"
    for split in ("train", "t10k")
    for kind in ("images-idx3", "labels-idx1")
]
MAX_IMAGES = 1_000_000  # per split: 784 MB of pixels, beyond which memory and disk run out first


def write_idx(path, array):
    """Write an MNIST IDX file (big-endian header, then raw uint8), atomically."""
    magic = 0x0800 | array.ndim  # 0x08 = unsigned byte
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    os.replace(partial, path)


def prepare_synthetic(out, train_size, test_size, seed):
    raw = out / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    # Each split draws from its own stream, so no test image copies a training image.
    for split, (prefix, count) in enumerate((("train", train_size), ("t10k", test_size))):
        images, labels = synthetic.synthetic_digits(count, seed=[seed, split])
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    print(f"wrote synthetic MNIST ({train_size} train, {test_size} test, seed {seed}) to {raw}")


def prepare_mnist(out):
    from torchvision.datasets import MNIST  # imported here: the synthetic path needs no torch

    raw = out / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    # Download beside, then move in: torchvision would take any files already in raw/ (say,
    # synthetic ones) for MNIST, and a failed download must leave the dataset as it was.
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        try:
            for train in (True, False):
                MNIST(root=scratch, train=train, download=True)
        except (RuntimeError, OSError) as error:
            # torchvision lists every mirror it tried; the first one and its error say enough.
            reason = " ".join(" ".join(str(error).splitlines()[:3]).split())[:300]
            sys.exit(
                f"error: could not download MNIST ({reason}); check the network or proxy, "
                "or run `python scripts/prepare_dataset.py synthetic` to work offline"
            )
        for name in RAW_NAMES:  # the extracted files only: the .gz archives would double the upload
            os.replace(Path(scratch) / "MNIST" / "raw" / name, raw / name)
    print(f"wrote MNIST to {raw}")


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--out",
        type=Path,
        default=project.DATASET_DIR,
        help="folder that receives MNIST/raw/ (default: the project's dataset/)",
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sources = parser.add_subparsers(dest="source", required=True)
    synthetic = sources.add_parser(
        "synthetic",
        parents=[common],
        help="draw a learnable MNIST look-alike (offline, a few seconds)",
    )
    whole_number = options.whole_number  # the checks train.py's options use
    size = whole_number(1, MAX_IMAGES)
    synthetic.add_argument("--train-size", type=size, default=60000, help="train images")
    synthetic.add_argument("--test-size", type=size, default=10000, help="test images")
    synthetic.add_argument(
        "--seed", type=whole_number(0, 2**32 - 1), default=0, help="same seed, same images"
    )
    sources.add_parser(
        "mnist", parents=[common], help="download the real MNIST with torchvision (needs network)"
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.source == "synthetic":
            prepare_synthetic(args.out, args.train_size, args.test_size, args.seed)
        else:
            prepare_mnist(args.out)
    except OSError as error:  # --out is a file, a folder that cannot be written, a full disk
        where = f": {error.filename}" if error.filename else ""
        sys.exit(f"error: {error.strerror or error}{where}; run again once that is fixed")
    except KeyboardInterrupt:
        sys.exit("interrupted: the dataset is incomplete; run the same command again")


if __name__ == "__main__":
    main()
