"""Launch SageMaker training jobs from config files, wait, and fetch model, outputs and logs.

    python scripts/run_job.py --config config/exp001.yaml          # launch, wait, fetch
    python scripts/run_job.py --config config/exp001.yaml config/exp002.yaml   # in parallel
    python scripts/run_job.py --dry-run      # what would be launched, and its cost; no AWS call
    python scripts/run_job.py --max-cost 2   # refuse unless the job surely costs at most $2
    python scripts/run_job.py --local        # run that request on this machine (no Docker)
    python scripts/run_job.py --instance-count 2   # data-parallel on 2 hosts (torchrun)
    python scripts/run_job.py --folds 5      # 5-fold cross-validation: a job per fold, the CV
    python scripts/run_job.py --attach JOB   # follow an existing job, then fetch its results
    python scripts/run_job.py --attach JOB --max-cost 5   # and stop it if it would pass $5

Before a launch (and with --dry-run) it prints on stderr the most the job can cost (prices:
scripts/prices.py). While it waits: the job's log lines, how far it is, the time left and the
cost so far and by the end; --max-cost stops jobs whose cost by the end would pass it. Results
land in result/jobs/<timestamp>/ (one folder per job: model/, output/, logs.txt, exp.json with
the bill) whatever the outcome; the exit code is 0 only when every job completed.
"""

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
import options
from launcher import aws_env, job_options, jobs, project
from launcher.job_config import ConfigError


def build_parser():
    parser = job_options.parser_from_doc(__doc__)
    parser.add_argument(
        "--config",
        nargs="+",
        type=Path,
        default=[project.CONFIG_DIR / "exp001.yaml"],
        help="hyperparameter YAML file(s); several launch one job each (default: exp001.yaml)",
    )
    parser.add_argument(
        "--folds",
        type=options.whole_number(2, options.MAX_FOLDS),
        metavar="K",
        help="k-fold cross-validation as K jobs in parallel, one per fold (train.py --folds K "
        "--fold i); once they complete, their out-of-fold predictions give the CV score",
    )
    job_options.add_job_options(parser)
    job_options.add_result_options(parser, project.JOB_RESULTS_DIR, "result/jobs/")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--dry-run", action="store_true", help="show what would be launched; no AWS call"
    )
    parser.add_argument(
        "--json", action="store_true", help="with --dry-run: the whole request, as JSON"
    )
    modes.add_argument(
        "--local",
        action="store_true",
        help="run the job here, under the container's contract (argv, SM_* variables, /opt/ml; "
        "torchrun with --distributed)",
    )
    modes.add_argument(
        "--fetch",
        "--attach",
        nargs="+",
        metavar="JOB_NAME",
        help="an existing job: follow it as a launch does (unless --no-wait: its log lines, "
        "ETA and cost; --max-cost stops it), then fetch its results",
    )
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.local and args.instance_count > 1:
        parser.error(
            "--local runs one host; use --distributed --processes-per-host N for several processes"
        )
    if args.json and not args.dry_run:
        parser.error("--json goes with --dry-run")
    if args.folds and args.fetch:
        parser.error("--folds launches fold jobs; fetch them by name without it")
    if args.no_wait and (args.local or args.dry_run):
        parser.error("--no-wait is for SageMaker jobs, not --local or --dry-run")
    job_options.check_job_options(parser, args, local=args.local)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.fetch:
            return jobs.attach(args)
        configs = jobs.load_configs(args)
        if args.dry_run:
            return jobs.dry_run(args, configs)
        if args.local:
            return jobs.run_local(args, configs)
        return jobs.launch(args, configs)
    except ConfigError as error:
        print(f"run_job.py: error: {error}", file=sys.stderr)
        return job_options.EXIT_USAGE
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return job_options.EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(aws_env.run_script(main))
