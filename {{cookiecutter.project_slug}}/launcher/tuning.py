"""Tuning jobs: their YAML configs checked against train.py's options, started through SDK v3's
HyperparameterTuner, followed, and fetched (every trial's score and bill, the best trial's results).

scripts/tune.py is the command line.
"""

import csv
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from launcher import job_config, job_results
from launcher.job_config import ConfigError

STRATEGIES = ["Bayesian", "Random", "Grid"]
SCALINGS = ["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"]
RANGE_FIELDS = {"continuous": {"min", "max", "scaling"}, "integer": {"min", "max", "scaling"}}
RANGE_FIELDS["categorical"] = {"values"}
CONFIG_KEYS = ["strategy", "max-jobs", "max-parallel-jobs", "objective", "objective-type"]
CONFIG_KEYS += ["hyperparameters", "ranges"]
TUNING_NAME_LIMIT = 32  # SageMaker's limit for tuning job names


@dataclass
class TuningConfig:
    path: Path
    name: str
    hyperparameters: dict  # the same in every trial
    ranges: dict  # option -> {"type": ..., "min"/"max"/"scaling" or "values"}
    strategy: str = "Bayesian"
    max_jobs: int | None = None
    max_parallel_jobs: int = 1
    objective: str = job_config.OBJECTIVE
    objective_type: str = job_config.OBJECTIVE_TYPE


def trial_count(tuning):
    """The most trials the tuning job starts: max-jobs, or for Grid every combination."""
    if tuning.max_jobs:
        return tuning.max_jobs
    return math.prod(len(spec["values"]) for spec in tuning.ranges.values())


def unknown(kind, key, known):
    hint = job_config.did_you_mean(key, known)
    return f"unknown {kind} {key!r}; {hint}(expected one of: {', '.join(sorted(known))})"


def check_range(name, spec, fixed, parser, source):
    """A range of an option, as train.py would take every value SageMaker may pick from it."""
    where = f"{source}: ranges.{name}"

    def accepts(value, hint=""):
        try:
            job_config.check_hyperparameters({**fixed, name: value}, parser, where)
        except ConfigError as error:
            raise ConfigError(f"{error}{hint}") from None

    if not isinstance(spec, dict) or spec.get("type") not in RANGE_FIELDS:
        raise ConfigError(
            f"{where}: expected a mapping with type: continuous, integer or categorical; "
            f"got {spec!r}"
        )
    kind = spec["type"]
    for field in set(spec) - RANGE_FIELDS[kind] - {"type"}:
        raise ConfigError(
            f"{where}: {unknown(f'field of a {kind} range', field, RANGE_FIELDS[kind])}"
        )
    if kind == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values or len(set(map(str, values))) < len(values):
            raise ConfigError(f"{where}: values must be a list of different values, got {values!r}")
        for value in values:
            accepts(value)
        return
    low, high = spec.get("min"), spec.get("max")
    number = int if kind == "integer" else (int, float)
    if not all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"{where}: min and max must be {kind} numbers, got {low!r} and {high!r}")
    if not low < high:
        raise ConfigError(f"{where}: min ({low}) must be below max ({high})")
    scaling = spec.get("scaling", "Auto")
    if scaling not in SCALINGS:
        raise ConfigError(f"{where}: {unknown('scaling', scaling, SCALINGS)}")
    if scaling == "Logarithmic" and low <= 0:
        raise ConfigError(f"{where}: Logarithmic scaling needs min above 0, got {low}")
    if scaling == "ReverseLogarithmic" and not (kind == "continuous" and 0 <= low and high < 1):
        raise ConfigError(f"{where}: ReverseLogarithmic needs a continuous range within [0, 1)")
    for value in (low, high):
        accepts(value)
    if kind == "continuous":  # SageMaker passes fractions: the option must take them
        accepts((low + high) / 2, hint=" (a continuous range gives fractions; use type: integer)")


def load_tuning(path, parser):
    """Read and check a tuning config against train.py's options; ConfigError on any fault."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"tuning config not found: {path} (e.g. config/tune001.yaml)")
    content = job_config.read_yaml(path)
    for key in content:
        if key not in CONFIG_KEYS:
            raise ConfigError(f"{path}: {unknown('key', key, CONFIG_KEYS)}")
    fixed, ranges = content.get("hyperparameters") or {}, content.get("ranges") or {}
    if not isinstance(fixed, dict) or not isinstance(ranges, dict) or not ranges:
        raise ConfigError(f"{path}: `hyperparameters` is optional, `ranges` required: mappings")
    job_config.check_hyperparameters(fixed, parser, f"{path}: hyperparameters")
    for name, spec in ranges.items():
        if name in fixed:
            raise ConfigError(f"{path}: {name!r} is both fixed and tuned; keep one")
        check_range(name, spec, fixed, parser, path)
    config = TuningConfig(
        path=path,
        name=job_config.config_name(path),
        hyperparameters=fixed,
        ranges=ranges,
        strategy=content.get("strategy", "Bayesian"),
        max_jobs=content.get("max-jobs"),
        max_parallel_jobs=content.get("max-parallel-jobs", 1),
        objective=content.get("objective", job_config.OBJECTIVE),
        objective_type=content.get("objective-type", job_config.OBJECTIVE_TYPE),
    )
    check_limits(config)
    return config


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool)  # YAML's true is no count


def check_limits(config):
    where = config.path
    if config.strategy not in STRATEGIES:
        raise ConfigError(f"{where}: {unknown('strategy', config.strategy, STRATEGIES)}")
    if config.strategy == "Grid":
        if any(spec["type"] != "categorical" for spec in config.ranges.values()):
            raise ConfigError(f"{where}: Grid tries every combination: categorical ranges only")
    elif not is_count(config.max_jobs) or config.max_jobs < 1:
        raise ConfigError(f"{where}: max-jobs must be a whole number of at least 1")
    limit = config.max_jobs or sys.maxsize
    parallel = config.max_parallel_jobs
    if not is_count(parallel) or not 1 <= parallel <= limit:
        raise ConfigError(f"{where}: max-parallel-jobs must be from 1 to max-jobs ({limit})")
    metrics = [m["Name"] for m in job_config.METRIC_DEFINITIONS if m["Name"] != "epoch"]
    if config.objective not in metrics:
        raise ConfigError(f"{where}: objective: {unknown('metric', config.objective, metrics)}")
    if config.objective_type not in ("Maximize", "Minimize"):
        raise ConfigError(f"{where}: objective-type must be Maximize or Minimize")


def tuning_job_name(experiment, config_name):
    """<experiment>-<config>-<yymmddHHMMSS>, cut to SageMaker's 32 characters."""
    stamp = time.strftime("%y%m%d%H%M%S")
    base = job_config.base_job_name(experiment, config_name)
    return f"{base[: TUNING_NAME_LIMIT - len(stamp) - 1].rstrip('-')}-{stamp}"


class Captured(Exception):
    """--dry-run: the request, stopped before it leaves this machine."""


def launch(spec, tuning, name, session, dry_run=False):
    """Start the tuning job through SDK v3's HyperparameterTuner; returns the request sent.

    With dry_run (an offline session), the request is caught on its way out instead.
    """
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

    from launcher.job_request import uploaded_source

    kinds = {"continuous": ContinuousParameter, "integer": IntegerParameter}
    ranges = {
        key: CategoricalParameter(spec_["values"])
        if spec_["type"] == "categorical"
        else kinds[spec_["type"]](spec_["min"], spec_["max"], spec_.get("scaling", "Auto"))
        for key, spec_ in tuning.ranges.items()
    }
    with uploaded_source() as source_dir:
        return launch_tuner(spec, tuning, name, session, ranges, source_dir, dry_run)


def launch_tuner(spec, tuning, name, session, ranges, source_dir, dry_run):
    from sagemaker.train.tuner import HyperparameterTuner

    from launcher.job_request import CONTAINER_ENTRY, job_tags, model_trainer, training_channel

    tags = job_tags(spec, tuning.name)
    # Spot trials keep checkpoints under the tuning job's name: a reclaimed trial resumes. The
    # trials share that prefix; each checkpoint file is named after its trial's hyperparameters
    # (src/checkpoint.py), so no trial overwrites or resumes another's.
    trainer = model_trainer(
        spec,
        dict(tuning.hyperparameters),
        name,
        tags,
        session,
        source_dir=source_dir,
        checkpoints=spec.use_spot,
    )
    tuner = HyperparameterTuner(
        model_trainer=trainer,
        objective_metric_name=tuning.objective,
        objective_type=tuning.objective_type,
        hyperparameter_ranges=ranges,
        metric_definitions=job_config.METRIC_DEFINITIONS,
        strategy=tuning.strategy,
        max_jobs=tuning.max_jobs,
        max_parallel_jobs=tuning.max_parallel_jobs,
        tags=[{"Key": key, "Value": value} for key, value in tags.items()],
    )
    request = {}

    def record(params, **_):
        # Trials run the image's own entry, which passes no stop on: their program is
        # src/container_entry.py, which runs train.py and stops it when the trial stops.
        static = params["TrainingJobDefinition"]["StaticHyperParameters"]
        static["sagemaker_program"] = CONTAINER_ENTRY
        request.update(params)
        if dry_run:
            raise Captured

    session.boto_session.events.register(
        "before-parameter-build.sagemaker.CreateHyperParameterTuningJob", record
    )
    try:
        tuner.tune(inputs=[training_channel(spec)], job_name=name, wait=False)
    except Captured:
        pass
    except Exception as error:
        if not created_before_the_retry(error, session, name, request):
            raise
    return request


def request_summary(request):
    """The lines of a CreateHyperParameterTuningJob request a person checks before paying."""
    from launcher.job_request import data_row, tags_row

    config = request["HyperParameterTuningJobConfig"]
    definition = request["TrainingJobDefinition"]
    limits, objective = config["ResourceLimits"], config["HyperParameterTuningJobObjective"]
    resources = definition["ResourceConfig"]
    kind = "spot" if definition.get("EnableManagedSpotTraining") else "on-demand"
    seconds = definition["StoppingCondition"]["MaxRuntimeInSeconds"]
    ranges = config.get("ParameterRanges", {})
    shown = [
        f"{found['Name']} {found['MinValue']} to {found['MaxValue']} ({found['ScalingType']})"
        for kind_ in ("ContinuousParameterRanges", "IntegerParameterRanges")
        for found in ranges.get(kind_, [])
    ]
    shown += [
        f"{found['Name']} one of {', '.join(found['Values'])}"
        for found in ranges.get("CategoricalParameterRanges", [])
    ]
    fixed = {
        key: value
        for key, value in definition.get("StaticHyperParameters", {}).items()
        if not key.startswith("sagemaker_")  # the SDK's: the code and its program
    }
    rows = [
        ("image", definition["AlgorithmSpecification"]["TrainingImage"]),
        (
            "compute",
            f"{resources['InstanceCount']} x {resources['InstanceType']} ({kind}), "
            f"at most {seconds} s a trial",
        ),
        (
            "trials",
            f"at most {limits['MaxNumberOfTrainingJobs']}, "
            f"{limits['MaxParallelTrainingJobs']} at a time, {config['Strategy']}",
        ),
        ("objective", f"{objective['Type']} {objective['MetricName']}"),
        ("ranges", "; ".join(shown)),
        ("fixed", " ".join(f"{key}={value}" for key, value in fixed.items()) or "-"),
        ("data", data_row(definition.get("InputDataConfig", []))),
        ("output", definition["OutputDataConfig"]["S3OutputPath"]),
        ("tags", tags_row(request.get("Tags", []))),
    ]
    name = request["HyperParameterTuningJobName"]
    return [name, *(f"  {label:<16} {value}" for label, value in rows)]


def created_before_the_retry(error, session, name, request):
    """Whether a CreateHyperParameterTuningJob refused as "already exists" had in fact created
    the job: botocore retries a call whose answer timed out, and the retry finds the job the
    first call made (this request's, with its fixed hyperparameters)."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    if code != "ResourceInUse" or not request:
        return False
    sagemaker = session.boto_session.client("sagemaker")
    found = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    definition = found.get("TrainingJobDefinition") or {}
    sent = request.get("TrainingJobDefinition") or {}
    return definition.get("StaticHyperParameters") == sent.get("StaticHyperParameters")


def wait(sagemaker, name, poll_seconds):
    """Until the tuning job ends: its status and trial counts as they change."""

    def status_line(name):
        description = sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name
        )
        status = description["HyperParameterTuningJobStatus"]
        counters = description.get("TrainingJobStatusCounters", {})
        return status, f"{name}: {status} " + " ".join(f"{k}={v}" for k, v in counters.items() if v)

    job_results.wait_until_ended([name], status_line, poll_seconds)


def trial_rows(trials, maximize, bills=None):
    """One row per trial, best first (trials without a final metric last); bills: training
    job name -> {"billable_s": ..., "cost_usd": ...}."""
    rows = []
    for trial in trials:
        metric = trial.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        rows.append(
            {
                "training_job": trial["TrainingJobName"],
                "status": trial.get("TrainingJobStatus"),
                "objective": metric.get("Value"),
                **(bills or {}).get(trial["TrainingJobName"], {}),
                **trial.get("TunedHyperParameters", {}),
            }
        )
    scored = sorted(
        (r for r in rows if r["objective"] is not None),
        key=lambda r: r["objective"],
        reverse=maximize,
    )
    return scored + [r for r in rows if r["objective"] is None]


def trial_bills(session, trials):
    """Training job name -> billable seconds and cost of each trial (DescribeTrainingJob)."""
    sagemaker, bills = session.client("sagemaker"), {}
    for trial in trials:
        name = trial["TrainingJobName"]
        description = sagemaker.describe_training_job(TrainingJobName=name)
        summary = job_results.summarize(description, "sagemaker")
        summary = job_results.billed(summary, session.region_name)
        bills[name] = {"billable_s": summary["billable_seconds"], "cost_usd": summary["cost_usd"]}
    return bills


def fetch(session, name, folder):
    """tuning.json, trials.csv and the best job's results (best/) into folder."""
    sagemaker = session.client("sagemaker")
    description = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    trials = []
    for page in sagemaker.get_paginator(
        "list_training_jobs_for_hyper_parameter_tuning_job"
    ).paginate(HyperParameterTuningJobName=name):
        trials += page["TrainingJobSummaries"]
    config = description["HyperParameterTuningJobConfig"]
    objective = config["HyperParameterTuningJobObjective"]
    bills = trial_bills(session, trials)
    rows = trial_rows(trials, objective["Type"] == "Maximize", bills)
    costs = [bill["cost_usd"] for bill in bills.values()]
    folder.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(folder / "trials.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns or ["training_job"])
        writer.writeheader()
        writer.writerows(rows)
    best = description.get("BestTrainingJob")
    summary = {
        "tuning_job_name": name,
        "status": description["HyperParameterTuningJobStatus"],
        "failure_reason": description.get("FailureReason") or None,
        "strategy": config.get("Strategy"),
        "objective": objective,
        "trial_counts": description.get("TrainingJobStatusCounters"),
        "best": best
        and {
            "training_job": best["TrainingJobName"],
            "hyperparameters": best.get("TunedHyperParameters"),
            "objective": (best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}),
        },
        "trials": len(rows),
        # The trials' billable seconds at the cached price; None when a price is unknown.
        "cost_usd": None if None in costs else sum(costs),
    }
    problems = []
    if best:
        _, problems = job_results.fetch_job(session, best["TrainingJobName"], folder / "best")
    (folder / "tuning.json").write_text(json.dumps({**summary, "problems": problems}, indent=2))
    return summary, rows, problems
