"""Tune hyperparameters with a SageMaker tuning job, then fetch the best trial and every score.

    python scripts/tune.py --config config/tune001.yaml     # launch, wait, fetch
    python scripts/tune.py --dry-run     # what would launch, on one screen; no AWS call
    python scripts/tune.py --max-cost 5  # refuse unless all trials surely cost at most $5
    python scripts/tune.py --fetch NAME  # wait for an earlier tuning job and fetch its results

SageMaker starts training jobs with values from the config's ranges (SDK v3's
HyperparameterTuner), reads the objective metric from each job's log with the metric
definitions run_job.py uses, and names the trial with the best final value. Results land in
result/tune/<tuning job name>/: tuning.json (best job, its hyperparameters and metric), trials.csv
(every trial, best first) and best/ (the best job's model, outputs and logs, as run_job.py
fetches a job).
"""

import json
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
import options
from launcher import aws_env, job_cost, job_options, project, tuning
from launcher.job_config import ConfigError


def print_result(summary, rows, folder):
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
    parser = job_options.parser_from_doc(__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        default=project.CONFIG_DIR / "tune001.yaml",
        help="tuning YAML: strategy, limits, objective, fixed hyperparameters and ranges "
        "(default: config/tune001.yaml)",
    )
    # Trials run on one instance type each; warm pools do not serve them.
    job_options.add_job_options(
        parser, without=["--keep-alive", "--instance-fallback", "--max-pending"]
    )
    job_options.add_result_options(parser, project.TUNING_RESULTS_DIR, "result/tune/")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--dry-run", action="store_true", help="show what would be launched; no AWS call"
    )
    parser.add_argument(
        "--json", action="store_true", help="with --dry-run: the whole request, as JSON"
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
    if args.json and not args.dry_run:
        parser.error("--json goes with --dry-run")
    return args


def main(argv=None):
    from launcher.job_request import offline_session, online_session

    args = parse_args(argv)
    try:
        name = args.fetch
        if not name:
            config = tuning.load_tuning(args.config, options.build_parser())
            spec = job_options.job_spec(args)
            trials = [(config.name, tuning.trial_count(config))]
            bound = job_options.check_cost(args, spec, trials)
            name = tuning.tuning_job_name(args.exp_name, config.name)
        bucket = aws_env.default_bucket(args.region)
        if args.dry_run:
            with offline_session(args.region, bucket) as session:
                request = tuning.launch(spec, config, name, session, dry_run=True)
            if args.json:
                print(json.dumps(request, indent=2, default=str))
            else:
                print("\n".join(tuning.request_summary(request)))
                print("(the whole CreateHyperParameterTuningJob request: add --json)")
            return 0
        if not args.fetch:
            job_options.check_budget(args, aws_env.boto_session(args.region), bound)
            tuning.launch(spec, config, name, online_session(args.region, bucket))
            print(f"Launched tuning job {name}")
    except ConfigError as error:
        print(f"tune.py: error: {error}", file=sys.stderr)
        return job_options.EXIT_USAGE
    except Exception as error:  # API, credentials, role
        print(f"tune.py: error: {aws_env.error_message(error)}", file=sys.stderr)
        return job_options.EXIT_FAILED
    session = aws_env.boto_session(args.region)
    exit_code = None
    try:
        if not args.no_wait:
            tuning.wait(session.client("sagemaker"), name, args.poll_seconds)
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
        summary, rows, problems = tuning.fetch(session, name, folder)
    except Exception as error:
        print(f"tune.py: error: fetching {name}: {aws_env.error_message(error)}", file=sys.stderr)
        return job_options.EXIT_FAILED
    for problem in problems:
        print(f"tune.py: {problem}", file=sys.stderr)
    return exit_code or print_result(summary, rows, folder)


if __name__ == "__main__":
    sys.exit(aws_env.run_script(main))
