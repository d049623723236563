"""YOUR DATA: replace this file (and src/model.py) to train on your own problem.

The rest of the project asks this file for `load()`, `problems()` and `DatasetError` only, and
knows nothing else about the data: not the classes, not the image size, not the file format.

The example: image classification in the layout of most Kaggle image competitions, as
scripts/prepare_dataset.py writes it (a synthetic set, or your files from rawdata/):

    <data-dir>/train.csv          id,label: one row per labelled image; labels are any text
    <data-dir>/train/<id>.png     the labelled images (.png, .jpg or .jpeg), all of one size
    <data-dir>/test/<id>.png      the images to predict (optional, unlabelled)

Images are read as RGB. The labelled ones are split into train and val.
"""

import csv
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image  # comes with torchvision

from splits import Dataset, Split, hold_out

EXTENSIONS = (".png", ".jpg", ".jpeg")


class DatasetError(Exception):
    """The dataset is missing or malformed; the message says what to do."""


def load(data_dir, val_fraction, seed, info=None):
    """The Dataset in data_dir: train, val (a `val_fraction` of the labelled images, chosen by
    `seed`) and test, as model-ready tensors.

    info: a saved model's `info` (predict.py passes it) to prepare images exactly as they were
    in training; None computes it from the training part.
    """
    data_dir = Path(data_dir)
    ids, labels = read_labels(data_dir / "train.csv")
    classes = info["classes"] if info else sorted(set(labels))
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DatasetError(f"labels the model does not know: {', '.join(unknown[:5])}")
    targets = torch.tensor([classes.index(label) for label in labels])
    labelled = Split(read_images(data_dir / "train", ids), targets, ids)
    train, val = hold_out(labelled, val_fraction, seed)
    test_ids = sorted(p.stem for p in images_in(data_dir / "test"))
    test = Split(read_images(data_dir / "test", test_ids), ids=test_ids) if test_ids else None
    if info is None:  # statistics of this training part, saved with the model
        pixels = train.inputs.float().div_(255)
        info = {"classes": classes, "input_shape": list(train.inputs.shape[1:])}
        info |= {"mean": pixels.mean((0, 2, 3)).tolist(), "std": pixels.std((0, 2, 3)).tolist()}
    for name, split in (("train", train), ("test", test)):
        if split is not None and list(split.inputs.shape[1:]) != info["input_shape"]:
            shape = list(split.inputs.shape[1:])
            raise DatasetError(f"{name} images are {shape}, the model takes {info['input_shape']}")
    mean, std = (torch.tensor(info[key]).view(-1, 1, 1) for key in ("mean", "std"))

    def normalise(split):  # float16: half the memory, and finer than the step between grey levels
        inputs = split.inputs.to(torch.float16).div_(255).sub_(mean).div_(std)
        return Split(inputs, split.targets, split.ids)

    return Dataset(normalise(train), normalise(val), test and normalise(test), info)


def what_to_do():
    if "SM_CHANNEL_TRAINING" in os.environ:  # in a job: the data came from S3
        return "check what the job's S3 dataset holds (scripts/upload_dataset.py uploads dataset/)"
    return "run `python scripts/prepare_dataset.py synthetic` (or `rawdata`), or pass --data-dir"


def read_labels(path):
    """(ids, labels) of train.csv, checked."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"cannot read {path} ({error}); {what_to_do()}") from None
    if not rows or not {"id", "label"} <= set(rows[0]):
        raise DatasetError(f"{path} needs the columns id,label and a row per image")
    if len(rows) < 2:
        raise DatasetError(f"{path} lists {len(rows)} image: at least 2 are needed")
    return [row["id"] for row in rows], [row["label"] for row in rows]


def images_in(folder):
    return [p for p in Path(folder).glob("*") if p.suffix.lower() in EXTENSIONS]


def read_images(folder, ids):
    """uint8 (n, 3, height, width): the image of each id, in order."""
    found = {path.stem: path for path in images_in(folder)}
    missing = [id_ for id_ in ids if id_ not in found]
    if missing:
        raise DatasetError(
            f"no image for {len(missing)} id(s) in {folder} (first: {missing[0]}); {what_to_do()}"
        )
    images = []
    for id_ in ids:
        try:
            with Image.open(found[id_]) as image:
                images.append(np.asarray(image.convert("RGB")))
        except OSError as error:  # also PIL's UnidentifiedImageError
            reason = " ".join(str(error).split())[:200]
            raise DatasetError(f"cannot read {found[id_]} ({reason})") from None
    sizes = sorted({image.shape[:2] for image in images})
    if len(sizes) > 1:
        raise DatasetError(
            f"images in {folder} differ in size ({sizes[0]} and {sizes[1]}, height x width): "
            "resize them to one size first"
        )
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # channels first


def problems(folder):
    """What keeps `folder` from being a dataset load() reads ([] when none): upload_dataset.py
    asks before it uploads anything."""
    folder = Path(folder)
    found = [] if (folder / "train.csv").is_file() else [f"no train.csv in {folder}"]
    return found + ([] if images_in(folder / "train") else [f"no images in {folder / 'train'}"])
