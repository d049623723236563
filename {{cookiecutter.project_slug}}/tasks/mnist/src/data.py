"""YOUR DATA: replace this file (and src/model.py) to train on your own problem.

The rest of the project asks this file for `load()` and `DatasetError` only, and knows nothing
else about the data: not the number of classes, not the input shape, not the file format.

The example is MNIST in torchvision's layout, as scripts/prepare_dataset.py writes it (synthetic
or real): <data-dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (.gz also read).
The labelled training images are split into train and val; t10k is the test set.
"""

import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import torch
from torchvision.datasets import MNIST

from splits import Dataset, Split, hold_out

CLASSES = [str(digit) for digit in range(10)]
RAW_FILES = [
    f"{split}-{kind}-ubyte"
    for split in ("train", "t10k")
    for kind in ("images-idx3", "labels-idx1")
]


class DatasetError(Exception):
    """The dataset is missing or malformed; the message says what to do."""


def load(data_dir, validation, seed, info=None, options=None):
    """The Dataset in data_dir: train, val (the labelled examples that `validation`, a
    fraction or a splits.Fold, holds out by `seed`) and test, as model-ready tensors.

    info: a saved model's `info` (predict.py passes it) to prepare inputs exactly as they were
    in training; None computes it from the training part. options: train.py's (none of
    them concerns this example's data).
    """
    with tempfile.TemporaryDirectory() as scratch:
        root = uncompressed_root(data_dir, scratch)
        shown_as = Path(data_dir) / "MNIST" / "raw"
        labelled = Split(*read_split(root, True, shown_as))
        test = Split(*read_split(root, False, shown_as))
    train, val = hold_out(labelled, validation, seed)
    if info is None:
        mean, std = grey_level_statistics(train.inputs)
        info = {
            "classes": CLASSES,
            "input_shape": [1, *train.inputs.shape[1:]],
            "mean": mean,  # statistics of this training part, saved with the model
            "std": std,
        }
    normalised = [Split(normalise(s.inputs, info), s.targets, s.ids) for s in (train, val, test)]
    return Dataset(*normalised, info=info)


def grey_level_statistics(images):
    """Mean and standard deviation of uint8 images scaled to 0..1, from a count of each grey
    level: exact, without a float copy of the images (60,000 images: 188 MB saved at the peak)."""
    counts = torch.bincount(images.flatten(), minlength=256).double()
    levels = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * levels).sum() / counts.sum()
    variance = (counts * (levels - mean) ** 2).sum() / (counts.sum() - 1)
    return mean.item(), variance.sqrt().item()


def normalise(images, info):
    """uint8 (n, 28, 28) -> (n, 1, 28, 28) with mean 0 and standard deviation 1.

    Stored as float16: half the memory of float32, and still 6 times finer than the step
    between two grey levels; batches come out as float32.
    """
    scaled = images.unsqueeze(1).to(torch.float16).div_(255)
    return scaled.sub_(info["mean"]).div_(info["std"])


def what_to_do():
    if "SM_CHANNEL_TRAINING" in os.environ:  # in a job: the data came from S3
        return "check what the job's S3 dataset holds (scripts/upload_dataset.py uploads dataset/)"
    return "run `python scripts/prepare_dataset.py synthetic` (or `mnist`), or pass --data-dir"


def uncompressed_root(data_dir, scratch):
    """A root holding the four files uncompressed: data_dir itself, or `scratch` if any is .gz."""
    raw = Path(data_dir) / "MNIST" / "raw"
    missing = [name for name in RAW_FILES if not (raw / name).is_file()]
    if not missing:
        return Path(data_dir)
    if not all((raw / f"{name}.gz").is_file() for name in missing):
        raise DatasetError(f"no MNIST in {raw} (missing {', '.join(missing)}): {what_to_do()}")
    scratch_raw = Path(scratch) / "MNIST" / "raw"
    scratch_raw.mkdir(parents=True)
    for name in RAW_FILES:
        if name in missing:
            try:
                with gzip.open(raw / f"{name}.gz") as source, open(scratch_raw / name, "wb") as out:
                    shutil.copyfileobj(source, out)
            except (OSError, EOFError, zlib.error) as error:  # truncated or not gzip at all
                raise DatasetError(
                    f"{raw / name}.gz is not a readable gzip file ({error}); {what_to_do()}"
                ) from None
        else:
            (scratch_raw / name).symlink_to((raw / name).resolve())
    return Path(scratch)


def read_split(root, train, shown_as):
    """(images uint8 (n, 28, 28), labels int64 (n,)) of one split, checked.

    shown_as: the folder to name in errors (root may be a scratch copy).
    """
    try:
        split = MNIST(root=root, train=train, download=False)
        images, labels = split.data, split.targets
    except Exception as error:  # torchvision raises assorted types on a broken file
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise DatasetError(
            f"malformed MNIST in {shown_as} ({reason}): expected IDX files of uint8 images "
            f"and labels; {what_to_do()}"
        ) from error
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or len(images) != len(labels):
        raise DatasetError(
            f"malformed MNIST in {shown_as}: images {tuple(images.shape)}, labels {len(labels)} "
            f"(expected n x 28 x 28 images and n labels); {what_to_do()}"
        )
    if len(labels) < 2 or labels.min() < 0 or labels.max() >= len(CLASSES):
        raise DatasetError(
            f"malformed MNIST in {shown_as}: expected at least 2 images, labels 0..9; "
            f"{what_to_do()}"
        )
    return images, labels


def problems(folder):
    """What keeps `folder` from being a dataset load() reads ([] when none): upload_dataset.py
    asks before it uploads anything."""
    raw = Path(folder) / "MNIST" / "raw"
    missing = [n for n in RAW_FILES if not (raw / n).is_file() and not (raw / f"{n}.gz").is_file()]
    return [f"no {name} in {raw}" for name in missing]
