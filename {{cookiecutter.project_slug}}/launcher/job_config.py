"""Hyperparameter configs (config/*.yaml), checked against train.py's own options.

The check runs before anything touches AWS and imports neither torch nor the SageMaker SDK, so a
typo costs a second, not a failed job.
"""

import argparse
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

import metrics
from launcher.project import CONFIG_DIR

NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"


def metric_definitions(declared):
    """What SageMaker parses from train.py's metric lines (src/metrics.py declares them), charts
    in the console and reports as final metrics: val_accuracy=0.947 -> val:accuracy."""
    names = declared.EPOCH_COLUMNS[1:] + [f"test_{metric.name}" for metric in declared.EVALUATED]
    definitions = [{"Name": "epoch", "Regex": r"epoch=(\d+) "}]
    return definitions + [
        {"Name": name.replace("_", ":", 1), "Regex": rf"\b{name}={NUMBER}"} for name in names
    ]


METRIC_DEFINITIONS = metric_definitions(metrics)
# The metric runs are ranked by, as SageMaker names it, and whether more is better.
OBJECTIVE = metrics.OBJECTIVE.replace("_", ":", 1)
OBJECTIVE_TYPE = metrics.GOALS[metrics.OBJECTIVE].capitalize()  # Maximize or Minimize

# SageMaker job names: letters, digits and single hyphens, at most 63 characters. The SDK
# appends "-YYYYmmddHHMMSS" (15 characters) to <experiment>-<config>.
JOB_NAME_PART = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
BASE_NAME_LIMIT = 63 - 15
CONFIG_SIZE_LIMIT = 64 * 1024


class ConfigError(Exception):
    """A config that would fail the job; the message says what to change."""


@dataclass
class JobConfig:
    path: Path
    name: str  # the file's stem, as it appears in job names and tags
    hyperparameters: dict


def config_name(path):
    """exp001.yaml -> exp001; characters SageMaker names do not allow become hyphens."""
    return re.sub(r"-+", "-", re.sub(r"[^a-zA-Z0-9]", "-", Path(path).stem)).strip("-")


def base_job_name(experiment, config):
    if not JOB_NAME_PART.fullmatch(experiment):
        raise ConfigError(
            f"experiment name {experiment!r}: use letters, digits and single hyphens (--exp-name)"
        )
    room = BASE_NAME_LIMIT - len(experiment) - 1
    if room < 1:
        raise ConfigError(
            f"experiment name {experiment!r} is too long for job names: "
            f"keep it under {BASE_NAME_LIMIT - 1} characters (--exp-name)"
        )
    return f"{experiment}-{config[:room].rstrip('-')}"


class StrictLoader(yaml.SafeLoader):
    """YAML as configs need it: no anchors or aliases (a few lines of nested aliases expand to
    gigabytes), and no key given twice (the last would silently win)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            mark = self.peek_event().start_mark
            raise ConfigError(
                f"line {mark.line + 1}: YAML anchors and aliases (& and *) are not allowed"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"line {line}: key {key!r} is given twice; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path):
    """The `key: value` mapping of a small YAML file; ConfigError (one line) on any fault."""
    size = path.stat().st_size
    if size > CONFIG_SIZE_LIMIT:
        raise ConfigError(
            f"{path}: {size:,} bytes; a config is a few `key: value` lines "
            f"(at most {CONFIG_SIZE_LIMIT:,} bytes)"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        if "\0" in text:
            raise UnicodeError
    except UnicodeError:
        raise ConfigError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    try:
        content = yaml.load(text, Loader=StrictLoader) or {}
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected `key: value` lines, got {type(content).__name__}")
    return content


def load_config(path, parser):
    """Read a YAML config and check it as train.py would parse it inside the container."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file not found: {path} (configs live in {CONFIG_DIR}, e.g. config/exp001.yaml)"
        )
    hyperparameters = read_yaml(path)
    check_hyperparameters(hyperparameters, parser, path)
    name = config_name(path)
    if not name:
        raise ConfigError(f"{path}: name the file with letters or digits, e.g. exp002.yaml")
    return JobConfig(path=path, name=name, hyperparameters=hyperparameters)


def did_you_mean(key, known):
    """ "did you mean 'lr'? " for a near miss among `known`, else ""."""
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def check_hyperparameters(hyperparameters, parser, source):
    """Unknown keys, SageMaker-owned paths and values train.py would reject -> ConfigError."""
    known = {
        option[2:]: action
        for action in parser._actions  # argparse keeps no public list of its options
        for option in action.option_strings
        if option.startswith("--") and action.dest != "help"
    }
    for key in hyperparameters:
        if key not in known:
            hint = did_you_mean(key, known)
            raise ConfigError(
                f"{source}: unknown key {key!r}; {hint}(keys are src/train.py's options "
                f"without '--': {', '.join(sorted(known))})"
            )
        value = hyperparameters[key]
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: {key}: {value} is not a finite number")
        if known[key].type is Path:
            raise ConfigError(
                f"{source}: {key!r} is a path SageMaker sets through SM_* variables; "
                "remove it from the config"
            )

    def fail(message):
        raise ConfigError(f"{source}: {message}")

    # The container turns the hyperparameters into exactly this argv; parse it as train.py will.
    from sagemaker.train.container_drivers.common.utils import (
        hyperparameters_to_cli_args,
        safe_serialize,
    )

    parser.error = fail
    parser.exit_on_error = False
    argv = hyperparameters_to_cli_args({k: safe_serialize(v) for k, v in hyperparameters.items()})
    try:
        parser.parse_args(argv)
    except argparse.ArgumentError as error:
        fail(str(error))
