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
Read with pandas (the SageMaker PyTorch images ship it; its C parser infers each column's type
once, so a million-row file loads in seconds). Numeric columns are used as
they are (a missing value becomes the training median); a text column becomes one 0/1 column per
value seen in training when it has at most MAX_CATEGORIES, else one column of codes: each of its
MAX_CODES most frequent values by rank, the rest 0. Features are then standardised with the
training part's statistics, and so is a regression target (model.json's "target_scale":
predict.py undoes it).
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from metrics import PROBLEM
from splits import Dataset, Split, hold_out

ID, TARGET = "id", "target"
# k-fold (train.py --folds): a column whose rows must stay together in one fold, e.g. a patient
# or a user id, so that no model validates on rows of a group it trained on. None: no groups.
GROUP = None
MAX_CATEGORIES = 50
MAX_CODES = 1000
# With two classes, submission.csv holds the probability of the second one (e.g. of "1").
SUBMIT_PROBABILITY = True


class DatasetError(Exception):
    """The dataset is missing or malformed; the message says what to do."""


def load(data_dir, validation, seed, info=None, options=None):
    """The Dataset in data_dir: train, val (the labelled rows that `validation`, a
    fraction or a splits.Fold, holds out by `seed`) and test, as model-ready tensors.

    info: a saved model's `info` (predict.py passes it) to prepare rows exactly as they were in
    training; None computes it from the training part. options: train.py's (none of them
    concerns this example's data).
    """
    data_dir = Path(data_dir)
    rows = read_table(data_dir / "train.csv", [ID, TARGET, *([GROUP] if GROUP else [])])
    test_rows = None
    if (data_dir / "test.csv").is_file():
        test_rows = read_table(data_dir / "test.csv", [ID])
    # Row positions, with the classes to stratify folds by (pandas' codes of the target).
    strata = torch.from_numpy(pd.factorize(rows[TARGET])[0]) if PROBLEM != "regression" else None
    positions = Split(torch.arange(len(rows)), strata)
    groups = pd.factorize(rows[GROUP])[0] if GROUP else None
    train_part, val_part = hold_out(positions, validation, seed, groups)
    if info is None:
        info = column_info(rows, train_part.inputs.numpy())
    check_targets(rows, info)
    # Every row encoded once, then split: no copy of the table per part.
    features, targets = torch.from_numpy(encode(rows, info)), torch.tensor(target(rows, info))
    labelled = Split(features, targets, rows[ID].tolist())
    train, val = labelled.take(train_part.inputs), labelled.take(val_part.inputs)
    test = None
    if test_rows is not None and len(test_rows):
        test = Split(torch.from_numpy(encode(test_rows, info)), ids=test_rows[ID].tolist())
    return Dataset(train, val, test, info)


def what_to_do():
    if "SM_CHANNEL_TRAINING" in os.environ:  # in a job: the data came from S3
        return "check what the job's S3 dataset holds (scripts/upload_dataset.py uploads dataset/)"
    return "run `python scripts/prepare_dataset.py synthetic` (or `rawdata`), or pass --data-dir"


def read_table(path, required):
    """The CSV as a DataFrame: ID and TARGET as text, the other columns as pandas infers them."""
    try:
        table = pd.read_csv(path, dtype={ID: str, TARGET: str}, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        reason = " ".join(str(error).split())[:200]
        raise DatasetError(f"cannot read {path} ({reason}); {what_to_do()}") from None
    missing = [name for name in required if name not in table.columns or table.empty]
    if missing:
        raise DatasetError(
            f"{path} has no {', '.join(missing)} column (or no rows): set ID and TARGET (and "
            "GROUP) in src/data.py to your column names"
        )
    table[ID] = table[ID].fillna("")
    return table


def numbers(column):
    """The column as float64, NaN where a value is missing or no finite number."""
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    return values.where(np.isfinite(values))


def check_targets(rows, info):
    given = rows[TARGET].fillna("")
    if "classes" in info:
        unknown = sorted(set(given.unique()) - set(info["classes"]))
        if unknown:
            raise DatasetError(f"{TARGET} values the model does not know: {', '.join(unknown[:5])}")
        return
    bad = rows[ID][numbers(given).isna()].tolist()
    if bad:
        raise DatasetError(
            f"{TARGET} is not a number in {len(bad)} row(s) (ids {', '.join(bad[:5])}): a "
            "regression target must be; for classes set PROBLEM in src/metrics.py"
        )


def target(rows, info):
    """The model's targets: the classes' indices, or the standardised numbers."""
    if "classes" in info:
        index = {name: position for position, name in enumerate(info["classes"])}
        return rows[TARGET].fillna("").map(index).to_numpy(dtype=np.int64)
    mean, std = info["target_scale"]
    return ((numbers(rows[TARGET]) - mean) / std).to_numpy(dtype=np.float32)


def column_info(rows, train_positions):
    """What encoding a row takes, learnt from the training rows (those at `train_positions` of
    all the labelled `rows`): the model.json "data"."""
    if len(train_positions) < 2:
        count = len(train_positions)
        raise DatasetError(f"{count} labelled row(s) to train on: at least 2 are needed")
    numeric, categorical, codes = {}, {}, {}
    for name in rows.columns:
        if name in (ID, TARGET, GROUP):  # a group's id says who, not what to predict
            continue
        column = rows[name].iloc[train_positions]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            median = numbers(column).median()
            numeric[name] = 0.0 if np.isnan(median) else float(median)  # fills the gaps
            continue
        counts = column.fillna("").astype(str).value_counts(sort=True)
        if len(counts) <= MAX_CATEGORIES:
            categorical[name] = sorted(counts.index)
        else:  # many values: their ranks, most frequent first (1, 2, ...); the rest 0
            codes[name] = sorted(counts.index[:MAX_CODES], key=lambda v: (-counts[v], v))
    columns = [
        *numeric,
        *(f"{name}={value}" for name, seen in categorical.items() for value in seen),
        *(f"{name}#rank" for name in codes),
    ]
    if not columns:
        raise DatasetError("no feature column to learn from besides ID and TARGET")
    info = {"numeric": numeric, "categorical": categorical, "codes": codes, "columns": columns}
    info |= {"input_shape": [len(columns)], "target": TARGET}
    if PROBLEM == "classification":
        info["classes"] = sorted(rows[TARGET].fillna("").unique())
        info["submit_probability"] = SUBMIT_PROBABILITY and len(info["classes"]) == 2
    else:
        check_targets(rows.iloc[train_positions], info)
        values = numbers(rows[TARGET].iloc[train_positions])
        info["target_scale"] = [float(values.mean()), max(float(values.std()), 1e-12)]
    raw = encode(rows, info, standardise=False)[train_positions]
    info["mean"] = raw.mean(0, dtype=np.float64).tolist()
    info["std"] = np.maximum(raw.std(0, dtype=np.float64, ddof=1), 1e-6).tolist()
    return info


def encode(rows, info, standardise=True):
    """float32 (rows, features): each row's feature vector, in info["columns"]' order."""
    encoded = np.empty((len(rows), len(info["columns"])), dtype=np.float32)
    position = 0
    for name, median in info["numeric"].items():
        column = numbers(rows[name]) if name in rows else pd.Series(np.nan, index=rows.index)
        encoded[:, position] = column.fillna(median).to_numpy()
        position += 1
    for name, seen in {**info["categorical"], **info.get("codes", {})}.items():
        text = rows[name].fillna("").astype(str) if name in rows else pd.Series("", rows.index)
        if name in info["categorical"]:
            for value in seen:
                encoded[:, position] = (text == value).to_numpy()
                position += 1
        else:
            ranks = {value: rank for rank, value in enumerate(seen, start=1)}
            encoded[:, position] = text.map(ranks).fillna(0).to_numpy()
            position += 1
    if standardise:
        encoded -= np.asarray(info["mean"], dtype=np.float32)
        encoded /= np.asarray(info["std"], dtype=np.float32)
    return encoded


def problems(folder):
    """What keeps `folder` from being a dataset load() reads ([] when none): upload_dataset.py
    asks before it uploads anything."""
    return [] if (Path(folder) / "train.csv").is_file() else [f"no train.csv in {folder}"]
