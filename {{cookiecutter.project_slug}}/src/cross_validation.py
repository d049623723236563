"""k-fold cross-validation (train.py --folds K): a model per fold, and the out-of-fold score.

Fold i's model trains on the other folds and is validated on fold i (splits.hold_out with a
splits.Fold), into fold-<i>/ of the model, output and checkpoint folders: a stopped run resumes at
its fold and step, and a fold already trained is not trained again. Each fold writes its
out-of-fold predictions (fold-<i>/oof.csv: id, fold, target, then a probability per class, or
the predicted number in the target's units). Once every fold's are there, they make
<output-data-dir>/oof.csv and the CV score: src/metrics.py's objective over all of them
(cv.json, and the line cv_<metric>=<value>).
"""

import argparse
import csv
import math

import torch

import checkpoint
import metrics

CV_METRIC = metrics.OBJECTIVE.removeprefix("val_")  # accuracy or r2
FIRST_COLUMNS = ["id", "fold", "target"]


def fold_configs(config):
    """The config of each fold to train (--fold's alone, else every fold in turn)."""
    indices = [config.fold] if config.fold else range(1, config.folds + 1)
    return [
        argparse.Namespace(
            **vars(config)
            | {
                "fold": index,
                "model_dir": config.model_dir / f"fold-{index}",
                "output_data_dir": config.output_data_dir / f"fold-{index}",
                "checkpoint_dir": config.checkpoint_dir / f"fold-{index}",
            }
        )
        for index in indices
    ]


def predicted(outputs, info):
    """A model's outputs in the data's own terms: each class's probability (n, classes), or the
    number in the target's units (n, 1), as data.py's info says."""
    if "classes" in info:
        return outputs.double().softmax(dim=1).cpu()
    mean, std = info.get("target_scale", (0.0, 1.0))
    return outputs.double().cpu() * std + mean


def prediction_columns(info, outputs):
    """{column: values}: each class's probability, or the number in the target's own units."""
    values = predicted(outputs, info)
    if "classes" in info:
        return {name: values[:, k].tolist() for k, name in enumerate(info["classes"])}
    return {"prediction": values.squeeze(1).tolist()}


def ensemble(outputs, infos):
    """The fold models' outputs averaged, as outputs of the first: the mean of their class
    probabilities (as log-probabilities, whose softmax it is), or of their numbers."""
    mean = sum(predicted(each, info) for each, info in zip(outputs, infos, strict=True))
    mean = mean / len(outputs)
    if "classes" in infos[0]:
        return mean.clamp_min(1e-12).log().float()
    centre, scale = infos[0].get("target_scale", (0.0, 1.0))
    return ((mean - centre) / scale).float()


def target_values(info, targets):
    if "classes" in info:
        return [info["classes"][k] for k in targets.tolist()]
    mean, std = info.get("target_scale", (0.0, 1.0))
    return (targets.double().cpu() * std + mean).tolist()


def write_out_of_fold(path, fold, ids, outputs, targets, info):
    """This fold's validation examples with the model's predictions (fold-<i>/oof.csv)."""
    columns = {"id": ids, "fold": [fold] * len(ids), "target": target_values(info, targets)}
    predicted = prediction_columns(info, outputs)
    columns |= {name: [f"{value:.6g}" for value in values] for name, values in predicted.items()}

    def write(rows, partial):
        with open(partial, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            writer.writerows(rows)

    checkpoint.write_atomically(path, write, zip(*columns.values(), strict=True))


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def score(rows):
    """src/metrics.py's objective over out-of-fold rows, from the values oof.csv holds."""
    classes = [name for name in rows[0] if name not in FIRST_COLUMNS]
    if classes == ["prediction"]:  # a number: R² (or your metric) in the target's units
        outputs = torch.tensor([[float(row["prediction"])] for row in rows])
        targets = torch.tensor([float(row["target"]) for row in rows])
    else:  # log-probabilities are logits of the same distribution
        probabilities = torch.tensor([[float(row[name]) for name in classes] for row in rows])
        outputs = probabilities.clamp_min(1e-12).log()
        targets = torch.tensor([classes.index(row["target"]) for row in rows])
    (metric,) = [metric for metric in metrics.EVALUATED if metric.name == CV_METRIC]
    return metric.compute(outputs, targets)


def assemble(config):
    """oof.csv and cv.json in --output-data-dir once every fold has written its predictions;
    returns the CV line, or None while folds are missing (e.g. jobs of other folds running)."""
    paths = [config.output_data_dir / f"fold-{i}" / "oof.csv" for i in range(1, config.folds + 1)]
    if not all(path.is_file() for path in paths):
        return None
    rows = [row for path in paths for row in read_rows(path)]

    def write(rows, partial):
        with open(partial, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    checkpoint.write_atomically(config.output_data_dir / "oof.csv", write, rows)
    value = score(rows)
    if not math.isfinite(value):
        raise ValueError(f"the out-of-fold {CV_METRIC} is {value}")
    result = {f"cv_{CV_METRIC}": value, "folds": config.folds, "examples": len(rows)}
    checkpoint.write_atomically(config.output_data_dir / "cv.json", checkpoint.write_json, result)
    return f"cv_{CV_METRIC}={value:.4f} folds={config.folds} oof_examples={len(rows)}"
