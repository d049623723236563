"""The metrics of a run, each declared once: the epoch line, metrics.csv's columns, the plots,
experiment tracking, the job's metric definitions and the tuner's objective follow this list.

Adding a metric is one function and one line in EVALUATED (e.g. AUC for a binary task). This
file imports no torch at the top: the launcher reads it before anything is started on AWS.
"""

from collections.abc import Callable
from dataclasses import dataclass


def loss(outputs, targets):
    """What training minimises, per example on average: cross-entropy of class logits."""
    from torch.nn.functional import cross_entropy

    return cross_entropy(outputs.float(), targets)


def accuracy(outputs, targets):
    return (outputs.argmax(dim=1) == targets).double().mean().item()


@dataclass(frozen=True)
class Metric:
    name: str  # train.py prints <split>_<name>=<value>
    goal: str  # "maximize" or "minimize"
    compute: Callable  # (outputs, targets) of a whole split -> float


EVALUATED = [  # on val after every epoch, on a labelled test set at the end
    Metric("loss", "minimize", lambda outputs, targets: loss(outputs, targets).item()),
    Metric("accuracy", "maximize", accuracy),
]
OBJECTIVE = "val_accuracy"  # what tuning and the results table rank runs by
EPOCH_COLUMNS = ["epoch", "train_loss", *(f"val_{metric.name}" for metric in EVALUATED)]
GOALS = {"train_loss": "minimize"} | {
    f"{split}_{metric.name}": metric.goal for split in ("val", "test") for metric in EVALUATED
}


def evaluate(outputs, targets, split):
    """{"<split>_<name>": value} for every metric in EVALUATED."""
    return {f"{split}_{metric.name}": metric.compute(outputs, targets) for metric in EVALUATED}


def line(row):
    """The metric line, one per epoch (and one for the test set): name=value pairs that the
    job's metric definitions parse, e.g.  epoch=1 train_loss=0.2345 val_loss=0.0567 ..."""
    return " ".join(
        f"{name}={value}" if name == "epoch" else f"{name}={value:.4f}"
        for name, value in row.items()
    )


def confusion(outputs, targets, classes):
    """Counts [true][predicted] over a split, for classification."""
    pairs = targets * classes + outputs.argmax(dim=1)
    return pairs.bincount(minlength=classes * classes).reshape(classes, classes).tolist()
