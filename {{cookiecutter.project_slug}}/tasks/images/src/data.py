"""YOUR DATA: replace this file (and src/model.py) to train on your own problem.

The rest of the project asks this file for `load()`, `problems()` and `DatasetError` only, and
knows nothing else about the data: not the classes, not the image size, not the file format.

The example: image classification as Kaggle image competitions ship it, in either layout
(found from what is there; scripts/prepare_dataset.py writes the first):

    <data-dir>/train.csv + train/<id>.jpg     id,label: one row per labelled image
    <data-dir>/train/<class name>/*.jpg       or one folder per class (any names)
    <data-dir>/test/*.jpg                     the images to predict (optional, unlabelled)

Images of any size and mode (grey, RGBA, palette, CMYK, 16-bit; EXIF rotation honoured) in
PNG, JPEG, WebP, GIF, BMP or TIFF are read as RGB with Pillow, by the DataLoader's workers,
so memory does not grow with the dataset. Training images get a random resized crop and a
horizontal flip (--augment false: none); every image is then resized to --image-size and
normalised with the pretrained weights' statistics, or else the training part's.
"""

import csv
import os
import statistics
import warnings
from pathlib import Path

import torch
from PIL import Image, ImageOps  # comes with torchvision
from torchvision.transforms import v2

from splits import Dataset, hold_out

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
STATISTICS_SAMPLE = 512  # training images whose pixels give the mean and std (no pretraining)
MAX_AUTO_SIZE = 224  # --image-size auto, without pretrained weights: the median side, at most


class DatasetError(Exception):
    """The dataset is missing or malformed; the message says what to do."""


class ImageFiles(torch.utils.data.Dataset):
    """Image files as a split (splits.py): item i is (transform(image i), its class index)."""

    def __init__(self, paths, targets, ids, transform=None, draft_size=None):
        self.paths, self.targets, self.ids, self.transform = paths, targets, ids, transform
        self.draft_size = draft_size  # JPEGs decode at the smallest scale still this big

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        image = self.transform(read_image(self.paths[index], self.draft_size))
        return image, -1 if self.targets is None else self.targets[index]

    def take(self, index):
        positions = range(len(self))[index] if isinstance(index, slice) else index.tolist()
        targets = None if self.targets is None else self.targets[index]
        paths = [self.paths[i] for i in positions]
        ids = [self.ids[i] for i in positions]
        return ImageFiles(paths, targets, ids, self.transform, self.draft_size)


def load(data_dir, validation, seed, info=None, options=None):
    """The Dataset in data_dir: train, val (the labelled images that `validation`, a
    fraction or a splits.Fold, holds out by `seed`) and test, read from disk as the DataLoader asks.

    info: a saved model's `info` (predict.py passes it) to prepare images exactly as they were
    in training; None computes it from `options` (train.py's: --image-size, --augment,
    --backbone, --pretrained, --skip-bad-images) and the training part.
    """
    data_dir = Path(data_dir)
    skip_bad = bool(getattr(options, "skip_bad_images", False))
    paths, labels, ids = labelled_images(data_dir)
    classes = info["classes"] if info else sorted(set(labels))
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DatasetError(f"labels the model does not know: {', '.join(unknown[:5])}")
    keep, sizes = readable(paths, skip_bad)
    targets = torch.tensor([classes.index(labels[i]) for i in keep])
    labelled = ImageFiles([paths[i] for i in keep], targets, [ids[i] for i in keep])
    if len(labelled) < 2:
        raise DatasetError(f"{len(labelled)} labelled image(s) in {data_dir}: at least 2 needed")
    train, val = hold_out(labelled, validation, seed)
    test_paths = sorted(images_in(data_dir / "test"))
    test = None
    if test_paths:
        test_keep, _ = readable(test_paths, skip_bad)
        test_paths = [test_paths[i] for i in test_keep]
        test = ImageFiles(test_paths, None, [path.stem for path in test_paths])
    if info is None:
        info = dataset_info(train, classes, sizes, options)
    for split in (train, val, test):
        if split is not None:
            split.transform = transform(info, augment=split is train and info["augment"])
            split.draft_size = info["image_size"]
    return Dataset(train, val, test, info)


def what_to_do():
    if "SM_CHANNEL_TRAINING" in os.environ:  # in a job: the data came from S3
        return "check what the job's S3 dataset holds (scripts/upload_dataset.py uploads dataset/)"
    return "run `python scripts/prepare_dataset.py synthetic` (or `rawdata`), or pass --data-dir"


def labelled_images(data_dir):
    """(paths, labels, ids) of the labelled images, from train.csv or from class folders."""
    if (data_dir / "train.csv").is_file():
        ids, labels = read_labels(data_dir / "train.csv")
        found = {path.stem: path for path in images_in(data_dir / "train")}
        missing = [id_ for id_ in ids if id_ not in found]
        if missing:
            raise DatasetError(
                f"no image for {len(missing)} id(s) of train.csv in {data_dir / 'train'} "
                f"(first: {missing[0]}); {what_to_do()}"
            )
        return [found[id_] for id_ in ids], labels, ids
    folders = sorted(p for p in (data_dir / "train").glob("*") if p.is_dir())
    paths = [path for folder in folders for path in sorted(images_in(folder))]
    if not paths:
        raise DatasetError(
            f"no train.csv and no class folders of images in {data_dir / 'train'}; {what_to_do()}"
        )
    labels = [path.parent.name for path in paths]
    return paths, labels, [f"{path.parent.name}/{path.stem}" for path in paths]


def read_labels(path):
    """(ids, labels) of train.csv, checked."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"cannot read {path} ({error}); {what_to_do()}") from None
    if not rows or not {"id", "label"} <= set(rows[0]):
        raise DatasetError(f"{path} needs the columns id,label and a row per image")
    return [row["id"] for row in rows], [row["label"] for row in rows]


def images_in(folder):
    return [p for p in Path(folder).glob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()]


def readable(paths, skip_bad):
    """(positions of the images whose header reads, (width, height) of each): a file that is
    no image stops the run in one line naming it, or with --skip-bad-images is left out and
    counted. Headers only: reading them all takes seconds, decoding would take an epoch."""
    keep, sizes, bad = [], [], []
    for position, path in enumerate(paths):
        try:
            with warnings.catch_warnings(), Image.open(path) as image:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                sizes.append(image.size)
            keep.append(position)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            if not skip_bad:
                raise DatasetError(f"cannot read {path} ({short(error)}); {SKIP_HINT}") from None
            bad.append(path)
    if bad:
        print(f"skipped {len(bad)} unreadable image(s) (first: {bad[0]})")
    return keep, sizes


SKIP_HINT = "remove it, or pass --skip-bad-images true to leave such files out"


def short(error):
    return " ".join(str(error).split())[:200] or type(error).__name__


def read_image(path, size=None):
    """uint8 RGB tensor (3, height, width) of one file, upright as its EXIF says; a JPEG is
    decoded straight at a reduced scale when it is twice `size` or more (Pillow's draft)."""
    try:
        with Image.open(path) as image:
            if size and image.format == "JPEG":
                image.draft("RGB", (size, size))
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I"):  # 16/32-bit grey: keep the top 8 bits of 16
                image = image.point(lambda value: value / 256).convert("L")
            return v2.functional.pil_to_tensor(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot read {path} ({short(error)}); {SKIP_HINT}") from None


def dataset_info(train, classes, sizes, options):
    """What preparing an image takes, learnt from the training part: model.json's "data"."""
    backbone = getattr(options, "backbone", "cnn")
    pretrained = getattr(options, "pretrained", False) and backbone != "cnn"
    size = getattr(options, "image_size", None)
    info = {"classes": classes, "backbone": backbone, "pretrained": pretrained}
    info["augment"] = getattr(options, "augment", True)
    if pretrained:
        from torchvision.models import get_model_weights  # their metadata, no download

        preset = get_model_weights(backbone).DEFAULT.transforms()
        size = size or preset.crop_size[0]
        info |= {"image_size": size, "mean": list(preset.mean), "std": list(preset.std)}
    else:
        size = size or min(MAX_AUTO_SIZE, int(statistics.median(min(s) for s in sizes)))
        info |= {"image_size": size, "mean": [0.0] * 3, "std": [1.0] * 3}
        info |= pixel_statistics(train, info)
    info["input_shape"] = [3, size, size]
    return info


def pixel_statistics(train, info):
    """{"mean", "std"} per channel of up to STATISTICS_SAMPLE training images, as resized."""
    sample = train.take(slice(None, None, max(1, len(train) // STATISTICS_SAMPLE)))
    sample.transform = transform(info, augment=False)
    total, squares, count = torch.zeros(3, dtype=torch.float64), 0.0, 0
    for index in range(len(sample)):  # one image at a time: no stack of the whole sample
        pixels = sample[index][0].flatten(1).double()
        total, squares = total + pixels.sum(1), squares + pixels.square().sum(1)
        count += pixels.shape[1]
    mean = total / count
    std = ((squares - count * mean.square()) / (count - 1)).clamp(min=1e-6).sqrt()
    return {"mean": mean.tolist(), "std": std.clamp(min=1e-3).tolist()}


def transform(info, augment):
    """torchvision's v2 transforms from a decoded image to the model's normalised input."""
    size = info["image_size"]
    if augment:
        steps = [v2.RandomResizedCrop(size, scale=(0.75, 1.0)), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(size), v2.CenterCrop(size)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info["mean"], info["std"])]
    return v2.Compose(steps)


def problems(folder):
    """What keeps `folder` from being a dataset load() reads ([] when none), from the names of
    its files alone: upload_dataset.py asks before it uploads anything, doctor.py of a listing."""
    train = Path(folder) / "train"
    if (Path(folder) / "train.csv").is_file():
        return [] if images_in(train) else [f"no images in {train}"]
    if any(images_in(sub) for sub in train.glob("*") if sub.is_dir()):
        return []
    return [f"no train.csv, and no class folders of images in {train}"]
