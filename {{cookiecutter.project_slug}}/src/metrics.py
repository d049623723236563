"""The metrics of a run, each declared once: the epoch line, metrics.csv's columns, the plots,
experiment tracking, the job's metric definitions and the tuner's objective follow this list.

PROBLEM says what src/data.py's targets are: class indices (the model outputs one logit per
class) or numbers (one output; data.py standardises them, as its info["target_scale"] says).
Adding a metric is one function and one line in EVALUATED (e.g. AUC for a binary task). This
file imports no torch at the top: the launcher reads it before anything is started on AWS.
"""

from collections.abc import Callable
from dataclasses import dataclass

PROBLEM = "{{ 'regression' if cookiecutter.task == 'regression' else 'classification' }}"


def loss(outputs, targets):
    """What training minimises, per example on average: cross-entropy of class logits, or for
    regression the squared error of the one output."""
    from torch.nn import functional

    if PROBLEM == "regression":
        return functional.mse_loss(outputs.float().squeeze(1), targets.float())
    return functional.cross_entropy(outputs.float(), targets)


def accuracy(outputs, targets):
    return (outputs.argmax(dim=1) == targets).double().mean().item()


def r2(outputs, targets):
    """The coefficient of determination: 1 predicts every target, 0 no better than their mean."""
    errors = (outputs.double().squeeze(1) - targets.double()).square().sum()
    spread = (targets.double() - targets.double().mean()).square().sum()
    return (1 - errors / spread).item()


@dataclass(frozen=True)
class Metric:
    name: str  # train.py prints <split>_<name>=<value>
    goal: str  # "maximize" or "minimize"
    compute: Callable  # (outputs, targets) of a whole split -> float


LOSS = Metric("loss", "minimize", lambda outputs, targets: loss(outputs, targets).item())
EVALUATED = {  # on val after every epoch, on a labelled test set at the end
    "classification": [LOSS, Metric("accuracy", "maximize", accuracy)],
    "regression": [LOSS, Metric("r2", "maximize", r2)],
}[PROBLEM]
# What tuning and the results table rank runs by: the share of examples right, or of the
# targets' spread explained.
OBJECTIVE = {"classification": "val_accuracy", "regression": "val_r2"}[PROBLEM]
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
