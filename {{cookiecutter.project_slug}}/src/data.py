"""The training channel: MNIST in torchvision's layout, loaded once into memory.

<data-dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (or the same names + .gz),
as written by scripts/prepare_dataset.py (synthetic or real). The uint8 images are normalised
once into one tensor, which lives on the GPU when there is one and it fits; batches are then
slices of it.
"""

import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import torch
from torchvision.datasets import MNIST

RAW_FILES = [
    f"{split}-{kind}-ubyte"
    for split in ("train", "t10k")
    for kind in ("images-idx3", "labels-idx1")
]
# Real MNIST's pixel mean and standard deviation; a fixed pair keeps model.pt self-sufficient.
MEAN, STD = 0.1307, 0.3081


class DatasetError(Exception):
    """The dataset is missing or malformed; the message says what to do."""


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
    if len(labels) == 0 or labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f"malformed MNIST in {shown_as}: labels must be 0..9; {what_to_do()}")
    return images, labels


def place(tensors, device):
    """Move to `device` when it has room for them (with margin), else keep them on the CPU."""
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        if sum(t.nbytes for t in tensors) * 4 > free_bytes:
            return [t.pin_memory() for t in tensors]  # batches then cross one by one, async
    return [t.to(device) for t in tensors]


def load_mnist(data_dir, device, train_size=None, test_size=None):
    """{"train": (images, labels), "test": (images, labels)}, on `device` if they fit.

    train_size/test_size keep the first N images of a split (None: all of them).
    """
    with tempfile.TemporaryDirectory() as scratch:
        root = uncompressed_root(data_dir, scratch)
        raw = Path(data_dir) / "MNIST" / "raw"
        splits = {"train": read_split(root, True, raw), "test": read_split(root, False, raw)}
    limits = {"train": train_size, "test": test_size}
    loaded = {}
    for name, (images, labels) in splits.items():
        images, labels = images[: limits[name]], labels[: limits[name]]
        loaded[name] = place([normalise(images), labels], device)
    return loaded


def normalise(images):
    """uint8 (n, 28, 28) -> (n, 1, 28, 28) with mean 0 and standard deviation 1.

    Stored as float16: half the memory of float32, and still 6 times finer than the step
    between two grey levels. batches() hands out float32.
    """
    return images.unsqueeze(1).to(torch.float16).div_(255).sub_(MEAN).div_(STD)


def batches(images, labels, batch_size, device, order=None, start=0):
    """Yield (images, labels) mini-batches on `device` in `order` (default: as stored),
    beginning with batch number `start`.

    Slicing tensors already in memory replaces a DataLoader: no workers, no per-sample work.
    """
    for first in range(start * batch_size, len(labels), batch_size):
        index = (
            slice(first, first + batch_size) if order is None else order[first : first + batch_size]
        )
        yield (
            images[index].to(device, non_blocking=True).float(),
            labels[index].to(device, non_blocking=True),
        )
