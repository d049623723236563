"""train.py's command-line options, importable without torch.

run_job.py checks a config YAML against this parser before any AWS call, so it
must stay free of heavy imports.
"""

import argparse
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def parse_bool(text):
    """Booleans as SageMaker passes hyperparameters: true/True/false/False/1/0."""
    value = str(text).strip().lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false/1/0, got {text!r}")


def default_path(sagemaker_variable, local_folder):
    """SageMaker's location when it sets the variable, else the project's folder."""
    return Path(os.environ.get(sagemaker_variable) or PROJECT_ROOT / local_folder)


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train the MNIST CNN locally or inside a SageMaker training job."
    )
    paths = parser.add_argument_group("paths (SageMaker sets these through SM_* variables)")
    paths.add_argument(
        "--data-dir",
        type=Path,
        default=default_path("SM_CHANNEL_TRAINING", "dataset"),
        help="folder holding MNIST/raw/ (default: $SM_CHANNEL_TRAINING or dataset/)",
    )
    paths.add_argument(
        "--model-dir",
        type=Path,
        default=default_path("SM_MODEL_DIR", "result/model"),
        help="where model.pt goes (default: $SM_MODEL_DIR or result/model/)",
    )
    paths.add_argument(
        "--output-data-dir",
        type=Path,
        default=default_path("SM_OUTPUT_DATA_DIR", "result/output"),
        help="where metrics.csv and plots go (default: $SM_OUTPUT_DATA_DIR or result/output/)",
    )
    on_sagemaker = "SM_MODEL_DIR" in os.environ
    paths.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("/opt/ml/checkpoints") if on_sagemaker else PROJECT_ROOT / "result/checkpoints",
        help="checkpoints for resuming (default: /opt/ml/checkpoints on SageMaker, "
        "else result/checkpoints/)",
    )
    hyper = parser.add_argument_group("hyperparameters (keys of config/*.yaml)")
    hyper.add_argument("--epochs", type=int, default=5, help="passes over the training set")
    hyper.add_argument("--batch-size", type=int, default=128, help="images per step")
    hyper.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    hyper.add_argument("--seed", type=int, default=42, help="random seed")
    return parser
