"""Training jobs from config files: checked, launched (or run here, or printed), followed, fetched.

scripts/run_job.py is the command line; each function here takes its parsed arguments.
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import metrics
import options
from launcher import (
    aws_env,
    job_checks,
    job_config,
    job_cost,
    job_options,
    job_progress,
    job_results,
    project,
)
from launcher.job_config import ConfigError


def load_configs(args):
    """Every config checked against train.py's options, with its job base name (with --folds,
    a config per fold of each)."""
    configs = [job_config.load_config(path, options.build_parser()) for path in args.config]
    if getattr(args, "folds", None):
        configs = [fold for config in configs for fold in fold_configs(config, args.folds)]
    if not (project.SOURCE_DIR / project.ENTRY_SCRIPT).is_file():
        raise ConfigError(f"{project.SOURCE_DIR / project.ENTRY_SCRIPT} is missing")
    names = [config.name for config in configs]
    if len(set(names)) < len(names):
        raise ConfigError(f"two configs with the same name in {names}; rename one")
    if args.local and not Path(args.dataset_uri).is_dir() and "://" not in args.dataset_uri:
        raise ConfigError(
            f"no dataset at {args.dataset_uri}: run `python scripts/prepare_dataset.py synthetic`"
        )
    named = [(config, job_config.base_job_name(args.exp_name, config.name)) for config in configs]
    bases = [base for _, base in named]
    for base in bases:
        if bases.count(base) > 1:  # long names are cut to fit SageMaker's 63 characters
            same = [other.path.name for other, other_base in named if other_base == base]
            raise ConfigError(
                f"{' and '.join(same)} give the same job name prefix {base!r}; "
                "make their names differ in the first characters, or shorten --exp-name"
            )
    return named


def fold_configs(config, folds):
    """The config of each fold's job: train.py's --folds and --fold among its hyperparameters,
    and a name of its own (so are its job name and checkpoint prefix)."""
    if {"folds", "fold"} & set(config.hyperparameters):
        raise ConfigError(
            f"{config.path}: --folds sets folds and fold; remove them from the config"
        )
    return [
        dataclasses.replace(
            config,
            name=f"{config.name}-fold{index}",
            hyperparameters={**config.hyperparameters, "folds": folds, "fold": index},
        )
        for index in range(1, folds + 1)
    ]


def cross_validate(args, outcomes):
    """After --folds jobs: each config's out-of-fold predictions, gathered from its fold jobs'
    outputs into <out-dir>/<timestamp>-<config>-cv/, with their CV score (oof.csv, cv.json)."""
    import cross_validation  # src/'s, torch with it: only once jobs have finished

    by_config = {}
    for config_name, summary, _ in outcomes:
        name, _, fold = str(config_name).rpartition("-fold")
        by_config.setdefault(name, []).append((fold, summary.get("results_dir")))
    stamp = datetime.now().strftime("%Y%m%d%H%M%S")
    for name, folds in by_config.items():
        folder = args.out_dir / f"{stamp}-{name}-cv"
        for fold, results in folds:
            found = Path(results or "-", "output", f"fold-{fold}", "oof.csv")
            if found.is_file():
                (folder / f"fold-{fold}").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(found, folder / f"fold-{fold}" / "oof.csv")
        line = cross_validation.assemble(
            argparse.Namespace(output_data_dir=folder, folds=args.folds)
        )
        if line:
            print(f"{name}: {line} ({folder})")
        else:
            print(f"{name}: no CV score: not every fold job left its out-of-fold predictions")


def dry_run(args, configs):
    from launcher.job_request import build_request, offline_session

    spec = job_options.job_spec(args)
    job_options.check_cost(args, spec, [(config.name, 1) for config, _ in configs], args.out_dir)
    requests = []
    with offline_session(args.region, aws_env.default_bucket(args.region)) as session:
        for config, base_name in configs:
            requests.append(build_request(spec, config, base_name, session))
            show_driver(requests[-1], session)
    if args.json:
        print(json.dumps(requests[0] if len(requests) == 1 else requests, indent=2, default=str))
        return 0
    for request in requests:
        print("\n".join(request_summary(request)))
    print("(the whole CreateTrainingJob request: add --json)")
    return 0


def request_summary(request):
    """The lines of a request a person checks before paying for it."""
    from launcher.job_request import data_row, tags_row

    resources, stopping = request["ResourceConfig"], request["StoppingCondition"]
    kind = "spot" if request.get("EnableManagedSpotTraining") else "on-demand"
    types = resources.get("InstanceType") or " else ".join(
        choice["InstanceType"] for choice in resources["InstancePreferences"]
    )
    compute = f"{resources['InstanceCount']} x {types} ({kind})"
    compute += f", at most {stopping['MaxRuntimeInSeconds']} s"
    if stopping.get("MaxPendingTimeInSeconds"):
        compute += f", waiting for capacity at most {stopping['MaxPendingTimeInSeconds']} s"
    if resources.get("KeepAlivePeriodInSeconds"):
        compute += f", warm pool kept {resources['KeepAlivePeriodInSeconds']} s"
    given = request.get("HyperParameters") or {}
    hyperparameters = " ".join(f"{key}={value}" for key, value in given.items())
    rows = [
        ("image", request["AlgorithmSpecification"]["TrainingImage"]),
        ("compute", compute),
        ("hyperparameters", hyperparameters or "train.py's defaults"),
        ("data", data_row(request["InputDataConfig"])),
        ("output", request["OutputDataConfig"]["S3OutputPath"]),
        ("checkpoints", (request.get("CheckpointConfig") or {}).get("S3Uri", "-")),
        ("tags", tags_row(request.get("Tags", []))),
    ]
    return [request["TrainingJobName"], *(f"  {name:<16} {value}" for name, value in rows)]


def show_driver(request, session):
    """On stderr: how the container starts train.py (the SDK's sm_drivers channel says it)."""
    from launcher.local_job import DRIVERS_CHANNEL

    (drivers,) = [
        session.staged[channel["DataSource"]["S3DataSource"]["S3Uri"]]
        for channel in request["InputDataConfig"]
        if channel["ChannelName"] == DRIVERS_CHANNEL
    ]
    distributed = json.loads((drivers / "distributed.json").read_text() or "{}")
    script = (drivers / "sm_train.sh").read_text()
    driver = next(
        name for name in ["torchrun_driver.py", "basic_script_driver.py"] if name in script
    )
    hosts = request["ResourceConfig"]["InstanceCount"]
    print(
        f"{request['TrainingJobName']}: {hosts} host(s), sm_train.sh runs {driver}"
        + (f" with distributed.json {json.dumps(distributed)}" if distributed else ""),
        file=sys.stderr,
    )


def job_folder(args, job_name, config, several):
    """result/jobs/<timestamp>/, or <timestamp>-<config>/ when several configs run together."""
    stamp = job_results.job_timestamp(job_name)
    return job_results.results_folder(
        args.out_dir, job_name, f"{stamp}-{config.name}" if several else stamp
    )


def local_channels(request, session, workdir, region):
    """Channel name -> local folder: staged code and drivers, the dataset folder or a download."""
    channels = {}
    for channel in request["InputDataConfig"]:
        name, uri = channel["ChannelName"], channel["DataSource"]["S3DataSource"]["S3Uri"]
        if uri in session.staged:
            channels[name] = session.staged[uri]
        elif uri.startswith("s3://"):
            print(f"Downloading {uri}")
            channels[name] = Path(workdir, "download", name)
            s3 = aws_env.boto_session(region).client("s3")
            aws_env.download_prefix(s3, uri, channels[name])
        else:
            channels[name] = Path(uri)
    return channels


def run_local(args, configs):
    """Each config in turn, on this machine; results saved as for a SageMaker job."""
    from launcher import local_job
    from launcher.job_request import build_request, offline_session

    spec = job_options.job_spec(args)
    outcomes = []
    for config, base_name in configs:
        with (
            offline_session(args.region, aws_env.default_bucket(args.region)) as session,
            tempfile.TemporaryDirectory(prefix="sm-local-") as workdir,
        ):
            request = build_request(spec, config, base_name, session)
            channels = local_channels(request, session, workdir, args.region)
            print(f"Running {request['TrainingJobName']} locally")
            # As a job's checkpoint prefix: one folder per config, so running it again resumes.
            checkpoints = args.out_dir / "checkpoints" / base_name
            checkpoints.mkdir(parents=True, exist_ok=True)
            run = local_job.run_container(request, channels, workdir, checkpoints=checkpoints)
            description = local_job.description(request, run)
            summary = job_results.billed(job_results.summarize(description, "local"), args.region)
            # Nothing went to S3: the archives' only copy is what lands in the results folder.
            summary.update(model_uri=None, output_uri=None, code_uri=None)
            summary["checkpoint_uri"] = str(checkpoints)
            folder = job_folder(args, request["TrainingJobName"], config, len(configs) > 1)
            host = f"{local_job.HOST}-{int(run.start)}"
            events = [(host, milliseconds, line) for milliseconds, line in run.log_events]
            summary["startup"] = job_progress.startup(description, events)
            archives = {"model": run.model_tar, "output": run.output_tar}
            saved = job_results.save_results(folder, summary, archives, events)
            outcomes.append((config.name, {**saved, "results_dir": folder}, saved["problems"]))
            if run.status == "Stopped":
                break
    if run.status == "Stopped":
        return job_options.EXIT_INTERRUPTED
    exit_code = print_outcomes(outcomes)
    if args.folds:
        cross_validate(args, outcomes)
    return exit_code


def console_url(region, job_name):
    return (
        f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{job_name}"
    )


def not_created(folder, request, base_name, message):
    """Results folder for a job SageMaker never accepted: exp.json says why."""
    description = {
        **(request or {"TrainingJobName": base_name}),
        "TrainingJobStatus": "NotCreated",
        "FailureReason": message,
    }
    summary = job_results.summarize(description, "sagemaker")
    return {**job_results.save_results(folder, summary, {}, []), "results_dir": folder}


def launch(args, configs):
    from launcher.job_request import build_request, online_session

    spec = job_options.job_spec(args)
    jobs = [(config.name, 1) for config, _ in configs]
    bound = job_options.check_cost(args, spec, jobs, args.out_dir)
    session = aws_env.boto_session(args.region)
    failed = job_checks.before_launch(session, spec)
    if failed and failed[0].name == "credentials":
        raise ConfigError(f"{failed[0].detail}; nothing was launched")
    if failed:
        lines = [line for check in failed for line in check.lines()]
        lines.append("nothing was launched; python scripts/doctor.py checks the rest")
        raise ConfigError("\n".join(lines))
    job_options.check_budget(args, session, bound)
    warm_pool = job_checks.warm_pool_line(session, spec)
    if warm_pool:
        print(warm_pool, file=sys.stderr)
    sagemaker = session.client("sagemaker")
    launched, outcomes = [], []  # launched: (config name, job name, folder)
    sagemaker_session = online_session(args.region, aws_env.default_bucket(args.region))
    for config, base_name in configs:
        request = None
        try:
            request = build_request(spec, config, base_name, sagemaker_session)
            sagemaker.create_training_job(**request)
        except Exception as error:  # API, role: recorded (print_outcomes says it), launch the rest
            message = aws_env.error_message(error)
            job_name = request["TrainingJobName"] if request else base_name
            folder = job_folder(args, job_name, config, len(configs) > 1)
            outcomes.append((config.name, not_created(folder, request, base_name, message), []))
            continue
        job_name = request["TrainingJobName"]
        folder = job_folder(args, job_name, config, len(configs) > 1)
        print(f"Launched {job_name}\n  {console_url(args.region, job_name)}")
        launched.append((config.name, job_name, folder))
    return follow(args, session, launched, outcomes)


def attach(args):
    """--fetch: jobs launched earlier, found by name; an unknown name is reported once."""
    session = aws_env.boto_session(args.region)
    sagemaker = session.client("sagemaker")
    launched, missing = [], []
    for name in args.fetch:
        try:
            sagemaker.describe_training_job(TrainingJobName=name)
        except Exception as error:
            missing.append(name)
            message = aws_env.error_message(error)
            if job_results.is_not_found(error):
                message = (
                    f"no training job {name} in {args.region}; list yours with: "
                    f"aws sagemaker list-training-jobs --region {args.region}"
                )
            print(f"run_job.py: error: {message}", file=sys.stderr)
            continue
        launched.append((None, name, job_results.results_folder(args.out_dir, name)))
    if not launched:
        return job_options.EXIT_FAILED
    return follow(args, session, launched, []) or (job_options.EXIT_FAILED if missing else 0)


def follow(args, session, launched, outcomes):
    """Wait for the jobs (unless --no-wait), then fetch every one of them, whatever happened."""
    exit_code = None
    try:
        if not args.no_wait:
            wait(session, [job_name for _, job_name, _ in launched], args)
    except KeyboardInterrupt:
        exit_code = job_options.EXIT_INTERRUPTED
        print("\nInterrupted. The jobs keep running on SageMaker, and billing; to stop them:")
        for _, job_name, _ in launched:
            print(f"  aws sagemaker stop-training-job --training-job-name {job_name}")
    except Exception as error:
        exit_code = job_options.EXIT_FAILED
        print(f"run_job.py: error while waiting: {aws_env.error_message(error)}", file=sys.stderr)
    for config_name, job_name, folder in launched:
        try:
            summary, problems = job_results.fetch_job(session, job_name, folder)
        except Exception as error:
            message = f"fetching {job_name} failed: {aws_env.error_message(error)}"
            print(f"run_job.py: error: {message}", file=sys.stderr)
            summary, problems = {"job_name": job_name, "status": "Unknown"}, [message]
        for problem in problems:
            print(f"run_job.py: {job_name}: {problem}", file=sys.stderr)
        outcomes.append(
            (config_name or summary.get("config"), {**summary, "results_dir": folder}, problems)
        )
        if summary.get("status") not in job_results.TERMINAL_STATUSES:
            print(f"Fetch again later: python scripts/run_job.py --fetch {job_name}")
    # Without waiting, a job still running is as good as it gets.
    exit_code = exit_code or print_outcomes(
        outcomes, {"Completed", "InProgress"} if args.no_wait else None
    )
    if getattr(args, "folds", None) and not args.no_wait:
        cross_validate(args, outcomes)
    return exit_code


def wait(session, job_names, args):
    """Until every job ends: status changes; a single job's log lines as they come; each job's
    progress, ETA and cost; with --max-cost, StopTrainingJob once the projection passes it."""
    sagemaker, logs = session.client("sagemaker"), session.client("logs")
    default_epochs = options.build_parser().get_default("epochs")
    watches = {
        name: job_progress.JobWatch(
            job_results.JobLogs(logs, name), name, default_epochs, session.region_name
        )
        for name in job_names
    }
    stopping = set()

    def status_line(job_name):
        description = sagemaker.describe_training_job(TrainingJobName=job_name)
        watches[job_name].description = description
        status, secondary = description["TrainingJobStatus"], description.get("SecondaryStatus")
        return status, f"{job_name}: {status} ({secondary})"

    def after_each(job_name):
        watch = watches[job_name]
        events = watch.read_log()
        if len(job_names) == 1:
            for _, _, message in events:
                print(message)
        now = datetime.now(timezone.utc)
        line = watch.line(now)
        if events and line:
            print(line)
        over = job_progress.over_budget(watches.values(), getattr(args, "max_cost", None), now)
        for running in over[1] if over else []:
            if running.job_name in stopping:
                continue
            print(
                f"{running.job_name}: projected {job_cost.dollars(over[0])} passes --max-cost "
                f"{job_cost.dollars(args.max_cost)}: stopping it (train.py saves a checkpoint; "
                "launch the same config again to resume)",
                file=sys.stderr,
            )
            sagemaker.stop_training_job(TrainingJobName=running.job_name)
            stopping.add(running.job_name)

    job_results.wait_until_ended(job_names, status_line, args.poll_seconds, after_each)


def cost_cell(summary):
    """$0.12, with spot's saving ($0.05, spot saved 62%), or - (local, price unknown)."""
    if summary.get("cost_usd") is None:
        return "-"
    cell = job_cost.dollars(summary["cost_usd"])
    if summary.get("spot_saving") is not None:
        cell += f" (spot saved {summary['spot_saving']:.0%})"
    return cell


def print_triage(summary):
    """A failed or stopped job: its cause and fix when known, and the last lines of its log."""
    found = summary.get("triage")
    if not found:
        return
    if found["cause"]:
        print(f"  cause: {found['cause']}\n  fix: {found['fix']}")
    if found["log_tail"]:
        print(f"  last {len(found['log_tail'])} log lines (all in logs.txt):")
        print("\n".join(f"    {line}" for line in found["log_tail"]))


def print_outcomes(outcomes, good_statuses=None):
    """Print a line per job, as a table; exit code 0 only if all completed without problems."""
    rows = [["config", "job", "status", metrics.OBJECTIVE, "billable_s", "cost", "results"]]
    for config_name, summary, _ in outcomes:
        objective = (summary.get("final_metrics") or {}).get(job_config.OBJECTIVE)
        rows.append(
            [
                str(config_name or "-"),
                summary.get("job_name", "-"),
                summary.get("status", "-"),
                "-" if objective is None else f"{objective:.4f}",
                str(summary.get("billable_seconds") or "-"),
                cost_cell(summary),
                os.path.relpath(summary["results_dir"]) if summary.get("results_dir") else "-",
            ]
        )
        if summary.get("failure_reason"):
            print(f"{summary.get('job_name')}: {summary['failure_reason']}")
        if job_progress.startup_line(summary.get("startup")):
            print(f"{summary.get('job_name')}: {job_progress.startup_line(summary['startup'])}")
        print_triage(summary)
        if summary.get("price_unknown"):
            print(f"{summary.get('job_name')}: cost unknown: {summary['price_unknown']}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    good_statuses = good_statuses or {"Completed"}
    succeeded = all(
        summary.get("status") in good_statuses and not problems for _, summary, problems in outcomes
    )
    return 0 if succeeded and outcomes else job_options.EXIT_FAILED
