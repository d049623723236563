"""YOUR DATA: replace this file (and src/model.py) to train on your own problem.

The rest of the project asks this file for `load()`, `problems()` and `DatasetError` only, and
knows nothing else about the data: not the columns, not the classes, not the file format.

The example: tabular classification, or regression when src/metrics.py's PROBLEM says so, in
the layout of most Kaggle tabular competitions, as scripts/prepare_dataset.py writes it (a
synthetic set, or your files from rawdata/):

    <data-dir>/train.csv    ID and TARGET columns and any feature columns, one row per example
    <data-dir>/test.csv     the same without TARGET: the rows to predict (optional)

Set ID and TARGET below to your competition's column names (e.g. PassengerId and Survived, or
for House Prices' regression Id and SalePrice).
Numeric columns are used as they are (a missing value becomes the training median); text
columns become one 0/1 column per value seen in training (at most MAX_CATEGORIES, else the
column is left out). Features are then standardised with the training part's statistics, and
so is a regression target (model.json's "target_scale": predict.py undoes it).
"""

import csv
import math
import os
from pathlib import Path

import torch

from metrics import PROBLEM
from splits import Dataset, Split, hold_out

ID, TARGET = "id", "target"
MAX_CATEGORIES = 50
# With two classes, submission.csv holds the probability of the second one (e.g. of "1").
SUBMIT_PROBABILITY = True


class DatasetError(Exception):
    """The dataset is missing or malformed; the message says what to do."""


def load(data_dir, val_fraction, seed, info=None):
    """The Dataset in data_dir: train, val (a `val_fraction` of the labelled rows, chosen by
    `seed`) and test, as model-ready tensors.

    info: a saved model's `info` (predict.py passes it) to prepare rows exactly as they were in
    training; None computes it from the training part.
    """
    data_dir = Path(data_dir)
    rows = read_rows(data_dir / "train.csv", [ID, TARGET])
    test_rows = read_rows(data_dir / "test.csv", [ID]) if (data_dir / "test.csv").is_file() else []
    labelled = Split(torch.arange(len(rows)), ids=[row[ID] for row in rows])
    train_part, val_part = hold_out(labelled, val_fraction, seed)
    if info is None:
        info = describe([rows[i] for i in train_part.inputs.tolist()], rows)
    check_targets(rows, info)

    def split(part_rows, ids, labelled=True):
        features = torch.tensor([encode(row, info) for row in part_rows], dtype=torch.float32)
        targets = torch.tensor([target(row, info) for row in part_rows]) if labelled else None
        return Split(features, targets, ids)

    train = split([rows[i] for i in train_part.inputs.tolist()], train_part.ids)
    val = split([rows[i] for i in val_part.inputs.tolist()], val_part.ids)
    test = split(test_rows, [row[ID] for row in test_rows], labelled=False) if test_rows else None
    return Dataset(train, val, test, info)


def what_to_do():
    if "SM_CHANNEL_TRAINING" in os.environ:  # in a job: the data came from S3
        return "check what the job's S3 dataset holds (scripts/upload_dataset.py uploads dataset/)"
    return "run `python scripts/prepare_dataset.py synthetic` (or `rawdata`), or pass --data-dir"


def read_rows(path, required):
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"cannot read {path} ({error}); {what_to_do()}") from None
    missing = [name for name in required if not rows or name not in rows[0]]
    if missing:
        raise DatasetError(
            f"{path} has no {', '.join(missing)} column (or no rows): set ID and TARGET in "
            "src/data.py to your column names"
        )
    return rows


def number(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_targets(rows, info):
    if "classes" in info:
        unknown = sorted({row[TARGET] for row in rows} - set(info["classes"]))
        if unknown:
            raise DatasetError(f"{TARGET} values the model does not know: {', '.join(unknown[:5])}")
        return
    bad = [row[ID] for row in rows if number(row[TARGET]) is None]
    if bad:
        raise DatasetError(
            f"{TARGET} is not a number in {len(bad)} row(s) (ids {', '.join(bad[:5])}): a "
            "regression target must be; for classes set PROBLEM in src/metrics.py"
        )


def target(row, info):
    """The model's target for a row: the class's index, or the standardised number."""
    if "classes" in info:
        return info["classes"].index(row[TARGET])
    mean, std = info["target_scale"]
    return (float(row[TARGET]) - mean) / std


def describe(rows, all_rows):
    """What encoding a row takes, learnt from the training rows: the model.json "data"."""
    if len(rows) < 2:
        raise DatasetError(f"{len(rows)} labelled row(s) to train on: at least 2 are needed")
    numeric, categorical = {}, {}
    for name in rows[0]:
        if name in (ID, TARGET):
            continue
        values = [row[name] for row in rows]
        present = [number(value) for value in values if value != ""]
        if present and all(value is not None for value in present):
            numeric[name] = sorted(present)[len(present) // 2]  # the median fills gaps
        elif len(set(values)) <= MAX_CATEGORIES:
            categorical[name] = sorted(set(values))
    columns = [
        *numeric,
        *(f"{name}={value}" for name, seen in categorical.items() for value in seen),
    ]
    info = {"numeric": numeric, "categorical": categorical, "columns": columns}
    info |= {"input_shape": [len(columns)], "target": TARGET}
    if PROBLEM == "classification":
        info["classes"] = sorted({row[TARGET] for row in all_rows})
        info["submit_probability"] = SUBMIT_PROBABILITY and len(info["classes"]) == 2
    else:
        check_targets(rows, info)
        values = torch.tensor([float(row[TARGET]) for row in rows], dtype=torch.float64)
        info["target_scale"] = [values.mean().item(), values.std().clamp(min=1e-12).item()]
    if not columns:
        raise DatasetError("no feature column to learn from besides ID and TARGET")
    raw = torch.tensor([encode(row, info, standardise=False) for row in rows])
    info["mean"] = raw.mean(0).tolist()
    info["std"] = raw.std(0).clamp(min=1e-6).tolist()
    return info


def encode(row, info, standardise=True):
    """The feature vector of a row, in info["columns"]' order."""
    values = []
    for name, median in info["numeric"].items():
        value = number(row.get(name, ""))
        values.append(median if value is None else value)
    for name, seen in info["categorical"].items():
        values += [float(row.get(name) == value) for value in seen]
    if standardise:
        values = [(v - m) / s for v, m, s in zip(values, info["mean"], info["std"], strict=True)]
    return values


def problems(folder):
    """What keeps `folder` from being a dataset load() reads ([] when none): upload_dataset.py
    asks before it uploads anything."""
    return [] if (Path(folder) / "train.csv").is_file() else [f"no train.csv in {folder}"]
