"""A model's outputs on the test set (with test-time augmentation for images), and submission.csv
from them: in the competition's own format when the dataset has its sample_submission.csv, else id
plus one column.

With a sample, the submission has the sample's columns, in its order, and its ids, in its order
(an id may name a test file with or without its extension); a class-probability column per class
when the sample has one column per class name, else the one column the sample names: the class
as data.py names it, the probability of the second of two classes (where data.py asks for it), or
the number in the target's units. A mismatch (an id of the sample not predicted, a prediction the
sample does not ask for, columns that fit neither way) or a NaN output is a SubmissionError:
nothing is written.
"""

import csv
import shutil
from datetime import datetime
from pathlib import Path

import torch

import checkpoint
import cross_validation
import hardware
import splits

SAMPLE = "sample_submission.csv"


class SubmissionError(Exception):
    """The predictions do not fit the sample; the message says how."""


def predict(model, split, tta=False):
    """The model's outputs on every example of a split, in order, on the CPU. tta: each image
    also mirrored left to right, the two predictions averaged (class probabilities, given back as
    log-probabilities, or numbers)."""
    batches = splits.batches(split, 256, "cpu", workers=hardware.dataloader_workers(None))
    with torch.no_grad():
        found = []
        for inputs, _ in batches:
            predicted = model(inputs)
            if tta:
                mirrored = model(inputs.flip(-1))
                if predicted.shape[1] > 1:  # class logits
                    mean = (predicted.softmax(dim=1) + mirrored.softmax(dim=1)) / 2
                    predicted = mean.clamp_min(1e-12).log()
                else:
                    predicted = (predicted + mirrored) / 2
            found.append(predicted)
        return torch.cat(found)


def columns(outputs, info):
    """{column: values} of the default submission: the class's name, the second class's
    probability (where data.py asks for it), or the number (in the target's units)."""
    if not outputs.isfinite().all():
        raise SubmissionError("the model's outputs hold NaN or infinity: nothing was written")
    values = cross_validation.predicted(outputs, info)
    if "classes" not in info:
        return {info.get("target", "value"): [f"{v:.6g}" for v in values.squeeze(1).tolist()]}
    if info.get("submit_probability"):
        return {"probability": [f"{v:.6f}" for v in values[:, 1].tolist()]}
    return {"label": [info["classes"][k] for k in values.argmax(dim=1).tolist()]}


def read_sample(path):
    with open(path, newline="", encoding="utf-8-sig") as file:
        rows = list(csv.reader(file))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise SubmissionError(f"{path}: expected a header of an id column and at least one more")
    return rows[0], [row[0] for row in rows[1:]]


def as_sample(sample, ids, outputs, info):
    """(header, rows) in the sample's format; SubmissionError when the predictions do not fit."""
    header, sample_ids = read_sample(sample)
    wanted = header[1:]
    classes = info.get("classes", [])
    (predicted,) = columns(outputs, info).values()  # refuses NaN outputs
    if len(wanted) > 1 and sorted(wanted) == sorted(classes):  # a probability per class
        probabilities = cross_validation.predicted(outputs, info)
        values = {name: probabilities[:, classes.index(name)].tolist() for name in wanted}
        values = {name: [f"{v:.6f}" for v in column] for name, column in values.items()}
    elif len(wanted) == 1:
        values = {wanted[0]: predicted}
    else:
        shown = ", ".join(wanted[:5]) + (" ..." if len(wanted) > 5 else "")
        raise SubmissionError(
            f"{sample}: columns {shown} are neither one prediction nor one per class "
            f"({', '.join(classes[:5]) or 'no classes'})"
        )
    position = {id_: index for index, id_ in enumerate(ids)}
    stems = {Path(id_).stem: index for index, id_ in enumerate(ids)}
    found = [position.get(id_, stems.get(Path(id_).stem)) for id_ in sample_ids]
    missing = [id_ for id_, index in zip(sample_ids, found, strict=True) if index is None]
    if missing:
        raise SubmissionError(
            f"{len(missing)} id(s) of {sample.name} have no prediction (e.g. {missing[0]!r}); "
            "is the test set the competition's?"
        )
    extra = len(ids) - len(set(found))
    if extra:
        raise SubmissionError(f"{extra} predicted id(s) are not in {sample.name}")
    rows = [
        [id_, *(values[name][index] for name in wanted)]
        for id_, index in zip(sample_ids, found, strict=True)
    ]
    return header, rows


def keep_earlier(path):
    """A copy of an earlier submission.csv beside it, named after when it was written
    (submission-20261206093000.csv), before a new one replaces it; its path, or None."""
    if not path.is_file():
        return None
    stamp = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y%m%d%H%M%S")
    kept = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
    shutil.copy2(path, kept)
    return kept


def write(path, header, rows):
    """submission.csv, atomically: a reader sees the old file or the whole new one."""

    def write_rows(rows, partial):
        with open(partial, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            writer.writerows(rows)

    checkpoint.write_atomically(path, write_rows, rows)
