"""Tune hyperparameters with a SageMaker tuning job, then fetch the best trial and every score.

    python scripts/tune.py --config config/tune001.yaml     # launch, wait, fetch
    python scripts/tune.py --dry-run     # print the CreateHyperParameterTuningJob request; no AWS
    python scripts/tune.py --max-cost 5  # refuse unless all trials surely cost at most $5
    python scripts/tune.py --fetch NAME  # wait for an earlier tuning job and fetch its results

SageMaker starts training jobs with values from the config's ranges (SDK v3's
HyperparameterTuner), reads the objective metric from each job's log with the metric
definitions job_options.py uses, and names the trial with the best final value. Results land in
result/tune/<tuning job name>/: tuning.json (best job, its hyperparameters and metric), trials.csv
(every trial, best first) and best/ (the best job's model, outputs and logs, as job_options.py
fetches a job).
"""

import csv
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aws_env
import job_config
import job_cost
import job_options
import job_results
from job_config import ConfigError

RESULTS_DIR = aws_env.PROJECT_ROOT / "result" / "tune"
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


def start(spec, tuning, name, session, dry_run=False):
    """Start the tuning job through SDK v3's HyperparameterTuner; returns the request sent.

    With dry_run (an offline session), the request is caught on its way out instead.
    """
    from job_request import uploaded_source
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

    kinds = {"continuous": ContinuousParameter, "integer": IntegerParameter}
    ranges = {
        key: CategoricalParameter(spec_["values"])
        if spec_["type"] == "categorical"
        else kinds[spec_["type"]](spec_["min"], spec_["max"], spec_.get("scaling", "Auto"))
        for key, spec_ in tuning.ranges.items()
    }
    with uploaded_source() as source_dir:
        return start_tuner(spec, tuning, name, session, ranges, source_dir, dry_run)


def start_tuner(spec, tuning, name, session, ranges, source_dir, dry_run):
    from job_request import job_tags, model_trainer, training_channel
    from sagemaker.train.tuner import HyperparameterTuner

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
    return request


def wait(sagemaker, name, poll_seconds):
    last = None
    while True:
        description = sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name
        )
        status = description["HyperParameterTuningJobStatus"]
        counters = description.get("TrainingJobStatusCounters", {})
        line = f"{name}: {status} " + " ".join(f"{k}={v}" for k, v in counters.items() if v)
        if line != last:
            print(line)
            last = line
        if status in job_results.TERMINAL_STATUSES:
            return
        time.sleep(poll_seconds)


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


def report(summary, rows, folder):
    best = summary["best"]
    if best:
        metric = best["objective"]
        print(f"Best: {best['training_job']} {metric.get('MetricName')}={metric.get('Value')}")
        print(f"  hyperparameters: {json.dumps(best['hyperparameters'])}")
    for row in rows[:10]:
        print("  " + "  ".join(f"{key}={value}" for key, value in row.items()))
    cost = summary.get("cost_usd")
    cost = job_cost.dollars(cost) if cost is not None else f"unknown ({job_cost.REFRESH})"
    print(f"{len(rows)} trial(s), cost {cost}; results in {folder}")
    return 0 if summary["status"] == "Completed" and best else job_options.EXIT_FAILED


def build_parser():
    numbers = job_config.train_options()
    parser = job_options.parser_from_doc(__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        default=aws_env.PROJECT_ROOT / "config" / "tune001.yaml",
        help="tuning YAML: strategy, limits, objective, fixed hyperparameters and ranges "
        "(default: config/tune001.yaml)",
    )
    job_options.add_job_options(parser, numbers)
    job_options.add_result_options(parser, numbers, RESULTS_DIR, "result/tune/")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--dry-run", action="store_true", help="print the request as JSON; no AWS call"
    )
    modes.add_argument("--fetch", metavar="NAME", help="an existing tuning job: wait, fetch")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    job_options.check_job_options(parser, args)
    if args.distributed:
        parser.error(
            "trials run train.py as one process per job (SageMaker starts them through the "
            "image's own entry point, without torchrun); drop --distributed/--instance-count"
        )
    if args.no_wait and args.dry_run:
        parser.error("--no-wait is for SageMaker jobs, not --dry-run")
    return args


def main(argv=None):
    from job_request import offline_session, online_session

    args = parse_args(argv)
    try:
        name = args.fetch
        if not name:
            tuning = load_tuning(args.config, job_config.train_option_parser())
            spec = job_options.job_spec(args)
            job_options.check_cost(args, spec, [(tuning.name, trial_count(tuning))])
            name = tuning_job_name(args.exp_name, tuning.name)
        bucket = aws_env.default_bucket(args.region)
        if args.dry_run:
            with offline_session(args.region, bucket) as session:
                request = start(spec, tuning, name, session, dry_run=True)
            print(json.dumps(request, indent=2, default=str))
            return 0
        if not args.fetch:
            start(spec, tuning, name, online_session(args.region, bucket))
            print(f"Launched tuning job {name}")
    except ConfigError as error:
        print(f"tune.py: error: {error}", file=sys.stderr)
        return job_options.EXIT_USAGE
    except Exception as error:  # API, credentials, role
        print(f"tune.py: error: {aws_env.describe_error(error)}", file=sys.stderr)
        return job_options.EXIT_FAILED
    session = aws_env.boto_session(args.region)
    exit_code = None
    try:
        if not args.no_wait:
            wait(session.client("sagemaker"), name, args.poll_seconds)
        elif not args.fetch:
            print(f"Fetch later: python scripts/tune.py --fetch {name}")
            return 0
    except KeyboardInterrupt:
        exit_code = job_options.EXIT_INTERRUPTED
        print("\nInterrupted. The tuning job keeps running, and billing; to stop it, run")
        stop = "aws sagemaker stop-hyper-parameter-tuning-job --hyper-parameter-tuning-job-name"
        print(f"  {stop} {name}")
    folder = args.out_dir / name  # a later --fetch refreshes the same folder
    try:
        summary, rows, problems = fetch(session, name, folder)
    except Exception as error:
        print(f"tune.py: error: fetching {name}: {aws_env.describe_error(error)}", file=sys.stderr)
        return job_options.EXIT_FAILED
    for problem in problems:
        print(f"tune.py: {problem}", file=sys.stderr)
    return exit_code or report(summary, rows, folder)


if __name__ == "__main__":
    sys.exit(main())
