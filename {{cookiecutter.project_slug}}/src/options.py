"""train.py's command-line options, importable without torch.

run_job.py checks a config YAML against this parser before any AWS call, so it
must stay free of heavy imports (the launcher imports it, as train.py does).
"""

import argparse
import difflib
import math
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# src/tracking.py comes with projects rendered with experiment tracking.
HAS_TRACKING = Path(__file__).with_name("tracking.py").is_file()
MAX_WIDTH = 1024  # a bound that stops a typo (100000) from exhausting memory, not a tuning hint
MAX_FOLDS = 20
# Options that steer a run without changing what it computes: a checkpoint saved under other
# values of these still resumes. Every other option, a new one too, is part of its identity.
RUN_CONTROLS = {"data_dir", "model_dir", "output_data_dir", "checkpoint_dir", "resume"}
RUN_CONTROLS |= {"log_interval", "checkpoint_interval", "tracking", "num_workers"}
RUN_CONTROLS |= {"stall_timeout"}


def parse_bool(text):
    """Booleans as SageMaker passes hyperparameters: true/True/false/False/1/0."""
    value = str(text).strip().lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false/1/0, got {text!r}")


def whole_number(low, high=None):
    """An argparse type: a whole number from low to high (no limit when None)."""

    def parse(text):
        value = int(text)
        if value < low or (high is not None and value > high):
            limits = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {limits}, got {value}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in "invalid ... value" errors
    return parse


def finite_number(low, low_allowed=True):
    """An argparse type: a finite number, at least `low` (above it when not low_allowed)."""

    def parse(text):
        value = float(text)
        if not math.isfinite(value) or value < low or (value == low and not low_allowed):
            bound = f"{low:g} or more" if low_allowed else f"above {low:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def fraction(text):
    """An argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text}")
    return value


def workers(text):
    """An argparse type: "auto" (None: hardware.py chooses) or a whole number from 0 to 64."""
    return None if text == "auto" else whole_number(0, 64)(text)


workers.__name__ = "auto or whole number"
positive_int = whole_number(1)
non_negative_int = whole_number(0)
positive_float = finite_number(0, low_allowed=False)
non_negative_float = finite_number(0)


def default_path(sagemaker_variable, local_folder):
    """SageMaker's location when it sets the variable, else the project's folder."""
    return Path(os.environ.get(sagemaker_variable) or PROJECT_ROOT / local_folder)


def default_checkpoint_dir():
    """/opt/ml/checkpoints in a job (beside SM_MODEL_DIR=/opt/ml/model), else result/checkpoints.

    SageMaker syncs that folder with the job's checkpoint S3 URI, so a spot job that is
    interrupted and restarted finds its checkpoint there.
    """
    model_dir = os.environ.get("SM_MODEL_DIR")
    if model_dir:
        return Path(model_dir).parent / "checkpoints"
    return PROJECT_ROOT / "result" / "checkpoints"


#% if cookiecutter.task == "images"
# torchvision's classification networks src/model.py offers besides its small CNN (any of
# torchvision.models.list_models() works the same: add its name here).
BACKBONES = ("cnn", "resnet18", "resnet50", "efficientnet_b0", "convnext_tiny")


def image_size(text):
    """An argparse type: "auto" (None: src/data.py chooses) or a side from 8 to 1024 pixels."""
    return None if text == "auto" else whole_number(8, 1024)(text)


image_size.__name__ = "auto or whole number"


def add_image_options(group):
    group.add_argument(
        "--backbone",
        choices=BACKBONES,
        default="cnn",
        help="the network under the classifier: cnn (a small CNN, trained from scratch) or one "
        "of torchvision's (default: cnn)",
    )
    group.add_argument(
        "--pretrained",
        type=parse_bool,
        default=False,
        help="start the backbone from its ImageNet weights, downloaded once into torch's cache "
        "(default: false)",
    )
    group.add_argument(
        "--image-size",
        type=image_size,
        default="auto",
        help="side in pixels the images are resized and cropped to (auto: the pretrained "
        "weights' size, else the images' median side, at most 224)",
    )
    group.add_argument(
        "--augment",
        type=parse_bool,
        default=True,
        help="random resized crops and horizontal flips of training images (default: true)",
    )
    group.add_argument(
        "--backbone-lr-scale",
        type=finite_number(0, low_allowed=False),
        default=1.0,
        help="the backbone's learning rate as a share of --lr, the head's (fine-tuning: 0.1; "
        "default: 1)",
    )
    group.add_argument(
        "--freeze-epochs",
        type=non_negative_int,
        default=0,
        help="epochs at the start in which only the head learns (default: 0)",
    )
    group.add_argument(
        "--skip-bad-images",
        type=parse_bool,
        default=False,
        help="leave out files that are no readable image, with a count, instead of stopping "
        "(default: false)",
    )


#% endif
class SuggestingParser(argparse.ArgumentParser):
    """An ArgumentParser whose "unrecognized arguments" error says which option was meant
    (--epoch: did you mean --epochs?), as Python 3.14's suggest_on_error does for choices."""

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            hints = [self.hint(text.split("=")[0]) for text in unknown if text.startswith("-")]
            hints = "; ".join(hint for hint in hints if hint)
            hints = f" ({hints})" if hints else ""
            self.error(f"unrecognized arguments: {' '.join(unknown)}{hints}")
        return parsed

    def hint(self, unknown_option):
        """What to say of an option this parser does not have, or None."""
        close = difflib.get_close_matches(unknown_option, self._option_string_actions, n=1)
        return f"did you mean {close[0]}?" if close else None


class TrainParser(SuggestingParser):
    """train.py's parser: each option's own checks, then those between options."""

    def parse_args(self, args=None, namespace=None):
        config = super().parse_args(args, namespace)
        if config.folds == 1:
            self.error("argument --folds: 2 or more folds (0: one hold-out of --val-fraction)")
        if config.fold and not config.folds:
            self.error("argument --fold: needs --folds K (k-fold cross-validation)")
        if config.fold > config.folds:
            self.error(f"argument --fold: from 1 to --folds ({config.folds}), got {config.fold}")
        return config


def build_parser():
    parser = TrainParser(
        description="Train the model of src/model.py on the data src/data.py reads, locally or "
        "inside a SageMaker training job.",
        allow_abbrev=False,  # a config key must be an option's full name, never a prefix
        epilog="Booleans take true/false/1/0. Rerunning with the same hyperparameters resumes "
        "from the checkpoint in --checkpoint-dir.",
    )
    paths = parser.add_argument_group("paths (SageMaker sets these through SM_* variables)")
    paths.add_argument(
        "--data-dir",
        type=Path,
        default=default_path("SM_CHANNEL_TRAINING", "dataset"),
        help="the dataset folder src/data.py reads (default: $SM_CHANNEL_TRAINING or dataset/)",
    )
    paths.add_argument(
        "--model-dir",
        type=Path,
        default=default_path("SM_MODEL_DIR", "result/model"),
        help="where model.pt and model.json go (default: $SM_MODEL_DIR or result/model/)",
    )
    paths.add_argument(
        "--output-data-dir",
        type=Path,
        default=default_path("SM_OUTPUT_DATA_DIR", "result/output"),
        help="where metrics.csv and plots go (default: $SM_OUTPUT_DATA_DIR or result/output/)",
    )
    paths.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=default_checkpoint_dir(),
        help="checkpoints for resuming (default: /opt/ml/checkpoints in a SageMaker job, "
        "else result/checkpoints/)",
    )
    hyper = parser.add_argument_group("hyperparameters (keys of config/*.yaml)")
    hyper.add_argument(
        "--epochs", type=positive_int, default=5, help="passes over the training set"
    )
    hyper.add_argument("--batch-size", type=positive_int, default=128, help="examples per step")
    hyper.add_argument(
        "--lr", type=positive_float, default=0.01, help="peak learning rate (one-cycle schedule)"
    )
    hyper.add_argument(
        "--weight-decay", type=non_negative_float, default=1e-4, help="AdamW weight decay"
    )
    hyper.add_argument("--seed", type=whole_number(0, 2**32 - 1), default=42, help="random seed")
    hyper.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.1,
        help="share of the labelled examples held out for validation: the epoch line's val_* "
        "metrics (default: 0.1)",
    )
    hyper.add_argument(
        "--folds",
        type=whole_number(0, MAX_FOLDS),
        default=0,
        help="k-fold cross-validation: K models, each validated on its own fold of the labelled "
        "examples (stratified by class); their out-of-fold predictions give the CV score "
        "(0: one hold-out of --val-fraction instead)",
    )
    hyper.add_argument(
        "--fold",
        type=whole_number(0, MAX_FOLDS),
        default=0,
        help="with --folds: train this fold only, 1 to K (0: every fold in turn)",
    )
    hyper.add_argument(
        "--train-size",
        type=non_negative_int,
        default=0,
        help="train on the first N training examples (0: all)",
    )
    hyper.add_argument(
        "--test-size",
        type=non_negative_int,
        default=0,
        help="test on the first N test examples (0: all)",
    )
    model = parser.add_argument_group("model (src/model.py reads these; add your model's here)")
    model.add_argument(
        "--width",
        type=whole_number(1, MAX_WIDTH),
        default=16,
        help="the model's size as src/model.py reads it (the example CNN: channels of its first "
        "convolution; default: 16)",
    )
    #% if cookiecutter.task == "images"
    add_image_options(model)
    #% endif
    running = parser.add_argument_group("running")
    running.add_argument(
        "--amp", type=parse_bool, default=True, help="mixed precision on CUDA (default: true)"
    )
    running.add_argument(
        "--deterministic",
        type=parse_bool,
        default=True,
        help="reproducible kernels, bit-for-bit on CPU (default: true)",
    )
    running.add_argument(
        "--resume",
        type=parse_bool,
        default=True,
        help="continue from a checkpoint of the same hyperparameters (default: true)",
    )
    running.add_argument(
        "--checkpoint-interval",
        type=non_negative_float,
        default=300.0,
        help="seconds between checkpoints within an epoch, which bound what a kill without "
        "warning loses (0: at epoch ends and stops only; default: 300)",
    )
    running.add_argument(
        "--num-workers",
        type=workers,
        default="auto",
        help="DataLoader worker processes reading data that src/data.py leaves on disk (auto: "
        "one per core less one, at most 8; 0: read in the training process). Each example's "
        "random augmentation has a seed of its own, so the count never changes the results",
    )
    running.add_argument(
        "--stall-timeout",
        type=non_negative_float,
        default=1800.0,
        help="seconds without a finished training step (or evaluation batch) after which the "
        "run is taken as hung: every thread's stack goes to the log, the job fails saying so "
        "(0: never; default: 1800)",
    )
    running.add_argument(
        "--log-interval",
        type=non_negative_float,
        default=10.0,
        help="seconds between progress lines within an epoch (0: none but the run's first step; "
        "default: 10)",
    )
    if HAS_TRACKING:
        running.add_argument(
            "--tracking",
            type=parse_bool,
            default=True,
            help="log params, metrics, plots and the model with src/tracking.py (default: true)",
        )
    return parser
