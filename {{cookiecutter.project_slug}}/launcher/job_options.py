"""The command line the launcher's scripts share: what a training job runs on and with (each option
defined once), where its results go, and the exit codes.
"""

import argparse
import os
import re
import sys
from pathlib import Path

import options
from launcher import aws_env, job_cost, project
from launcher.job_config import ConfigError

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
MAX_RUN_LIMIT = 28 * 24 * 3600  # MaxRuntimeInSeconds: SageMaker refuses more than 28 days
KEEP_ALIVE_MAX = 21600  # KeepAlivePeriodInSeconds' maximum in the API (botocore's model; tested)
MAX_FALLBACKS = 4  # InstancePreferences holds at most 5 types (botocore's model; tested)
MAX_PENDING_RANGE = (1800, 2419200)  # MaxPendingTimeInSeconds' bounds (botocore's model; tested)
# The families MaxPendingTimeInSeconds applies to: accelerated ones (API reference).
ACCELERATED = re.compile(r"^ml\.(p|g|trn|inf)\d")


def input_mode(text):
    if text.lower() == "pipe":
        raise argparse.ArgumentTypeError(
            "Pipe streams records through a FIFO, but src/data.py reads files from a folder; "
            "use File (copy before start) or FastFile (stream from S3 on read)"
        )
    modes = {"file": "File", "fastfile": "FastFile"}
    if text.lower() not in modes:
        raise argparse.ArgumentTypeError(f"choose File or FastFile, not {text!r}")
    return modes[text.lower()]


BUDGET_VARIABLE = "PROJECT_BUDGET_USD"  # a class sets it once for every student
# Every option of a job, defined once: run_job.py and tune.py take them all (add_job_options);
# doctor.py and prices.py take the ones they check (add_options), with the same meaning.
JOB_OPTIONS = {
    "--dataset-uri": dict(
        help="training data: s3://... (default: s3://sagemaker-<region>-<account>/dataset, where "
        "upload_dataset.py puts it); with --local also a folder (default: dataset/)",
    ),
    "--exp-name": dict(
        default=project.EXPERIMENT_NAME,
        help="experiment: prefixes job names <exp>-<config>-<timestamp> (default: %(default)s)",
    ),
    "--instance-type": dict(default=project.INSTANCE_TYPE, help="default: %(default)s"),
    "--instance-fallback": dict(
        nargs="+",
        metavar="TYPE",
        default=[],
        help=f"instance types SageMaker tries in this order when --instance-type has no "
        f"capacity (at most {MAX_FALLBACKS}; on-demand only); the job runs, and is billed, on the "
        "first that has some",
    ),
    "--max-pending": dict(
        type=options.whole_number(*MAX_PENDING_RANGE),
        metavar="SECONDS",
        help=f"fail the job once it has waited this long for capacity ({MAX_PENDING_RANGE[0]} to "
        f"{MAX_PENDING_RANGE[1]}; SageMaker applies it to GPU and Trainium types only; default: "
        "no limit)",
    ),
    "--instance-count": dict(
        type=options.positive_int,
        default=1,
        help="hosts; more than 1 trains data-parallel across them (implies --distributed; "
        "default: %(default)s)",
    ),
    "--distributed": dict(
        action="store_true",
        help="data-parallel with torchrun: one train.py process per GPU on every host, "
        "gradients averaged (SDK v3's Torchrun)",
    ),
    "--processes-per-host": dict(
        type=options.positive_int,
        help="with --distributed: train.py processes per host (default: one per GPU, "
        "1 without GPUs)",
    ),
    "--role": dict(
        default=os.environ.get("SAGEMAKER_ROLE_ARN") or project.SAGEMAKER_ROLE,
        help=f"execution role name (in account {project.AWS_ACCOUNT_ID}) or ARN "
        f"(default: $SAGEMAKER_ROLE_ARN, else {project.SAGEMAKER_ROLE})",
    ),
    "--image-uri": dict(
        help=f"training image (default: the SageMaker PyTorch {project.PYTORCH_VERSION} image "
        "for the instance type"
        + (", or this project's ECR image)" if project.CONTAINER == "custom" else ")"),
    ),
    "--input-mode": dict(
        type=input_mode,
        default="File",
        help="File: copy the dataset before training; FastFile: stream it from S3 as read "
        "(default: %(default)s; Pipe does not suit train.py)",
    ),
    #% if cookiecutter.experiment_tracking == "mlflow"
    "--mlflow-tracking-arn": dict(
        default=os.environ.get("MLFLOW_TRACKING_ARN"),
        help="SageMaker managed MLflow tracking server ARN; the job logs to it "
        "(default: $MLFLOW_TRACKING_ARN; none: the job does not track)",
    ),
    #% endif
    "--max-run": dict(
        type=options.positive_int,
        default=3600,
        help=f"seconds of training at most (default: 3600; SageMaker's limit: {MAX_RUN_LIMIT})",
    ),
    "--use-spot": dict(
        action=argparse.BooleanOptionalAction,
        default=project.USE_SPOT_INSTANCES,
        help="managed spot: cheaper, may be interrupted; checkpoints let it resume "
        "(default: %(default)s)",
    ),
    "--max-wait": dict(
        type=options.positive_int,
        help="spot: seconds of waiting plus training at most (default: twice --max-run)",
    ),
    "--keep-alive": dict(
        type=options.non_negative_int,
        default=0,
        help="not spot: keep the instance warm this many seconds for the next job, which then "
        "starts in seconds (billed while warm; needs a warm pool quota; default: 0 = off)",
    ),
    "--checkpoint-uri": dict(
        help="S3 prefix for /opt/ml/checkpoints: each config's jobs use <uri>/<experiment>-"
        "<config>/, so launching a config again resumes where its last job stopped (default: "
        "s3://sagemaker-<region>-<account>/<experiment>-<config>/checkpoints/)",
    ),
    "--max-cost": dict(
        type=options.positive_float,
        metavar="USD",
        help="refuse to launch when the most the job(s) can cost is above this, or unknown "
        "(prices: scripts/prices.py), and stop them while running when their cost by the end "
        "would pass it (default: no limit)",
    ),
    "--budget": dict(
        type=options.positive_float,
        metavar="USD",
        default=os.environ.get(BUDGET_VARIABLE),
        help="refuse to launch when what this project's jobs have cost so far (SageMaker's "
        "records: every job tagged project=<this project>, a running one at its bound) plus the "
        f"new job(s)' bound is above this, e.g. a class's budget (default: ${BUDGET_VARIABLE}, "
        "else no limit)",
    ),
}


def add_options(parser, *flags):
    """The named job options (e.g. "--instance-type"), as JOB_OPTIONS defines them."""
    for flag in flags:
        parser.add_argument(flag, **JOB_OPTIONS[flag])


def add_job_options(parser, without=()):
    """Every job option (but those `without`), and the region."""
    add_options(parser, *(flag for flag in JOB_OPTIONS if flag not in without))
    aws_env.add_region_option(parser)


def check_job_options(parser, args, local=False):
    """Checks and defaults that depend on several job options (parser.error on a bad one)."""
    if args.max_run > MAX_RUN_LIMIT:
        parser.error(f"--max-run: SageMaker runs a job at most {MAX_RUN_LIMIT} seconds (28 days)")
    args.max_wait = args.max_wait or 2 * args.max_run
    keep_alive = getattr(args, "keep_alive", 0)
    if keep_alive > KEEP_ALIVE_MAX:
        parser.error(f"--keep-alive: SageMaker keeps a warm pool at most {KEEP_ALIVE_MAX} seconds")
    if local and keep_alive:
        parser.error("--keep-alive keeps a SageMaker instance warm; --local runs here")
    if args.use_spot and keep_alive:
        parser.error("--keep-alive (warm pools) does not work with --use-spot; drop one")
    if args.use_spot and args.max_wait < args.max_run:
        parser.error("--max-wait must be at least --max-run")
    if args.checkpoint_uri:
        try:
            aws_env.split_s3_uri(args.checkpoint_uri)
        except ValueError as error:
            parser.error(f"--checkpoint-uri: {error}")
    check_capacity_options(parser, args, local)
    if args.processes_per_host and not args.distributed:
        parser.error("--processes-per-host needs --distributed")
    args.distributed = args.distributed or args.instance_count > 1
    #% if cookiecutter.experiment_tracking == "mlflow"
    arn = args.mlflow_tracking_arn
    if arn and not arn.startswith("arn:aws"):
        parser.error(f"--mlflow-tracking-arn: expected arn:aws:sagemaker:..., got {arn!r}")
    #% endif
    if args.dataset_uri is None:
        bucket = aws_env.default_bucket(args.region)
        args.dataset_uri = str(project.DATASET_DIR) if local else aws_env.dataset_uri(bucket)
    if local and not args.dataset_uri.startswith("s3://"):
        args.dataset_uri = str(Path(args.dataset_uri).resolve())
    else:
        try:
            aws_env.split_s3_uri(args.dataset_uri)
        except ValueError as error:
            parser.error(f"--dataset-uri: {error}; upload with scripts/upload_dataset.py")


def check_capacity_options(parser, args, local):
    """--instance-fallback and --max-pending: what SageMaker accepts, refused here otherwise."""
    fallback = getattr(args, "instance_fallback", [])
    max_pending = getattr(args, "max_pending", None)
    if local and (fallback or max_pending):
        parser.error("--instance-fallback, --max-pending: SageMaker's capacity, not --local's")
    if len(fallback) > MAX_FALLBACKS:
        parser.error(f"--instance-fallback: at most {MAX_FALLBACKS} types after --instance-type")
    types = [args.instance_type, *fallback]
    if len(set(types)) < len(types):
        parser.error(f"--instance-fallback: each type once, and not --instance-type again: {types}")
    if fallback and args.use_spot:
        parser.error("--instance-fallback works on-demand only (SageMaker's instance preferences)")
    if max_pending and not any(ACCELERATED.match(name) for name in types):
        parser.error(
            f"--max-pending: SageMaker applies it to GPU and Trainium types (ml.p*, ml.g*, "
            f"ml.trn*, ml.inf*) only, and {', '.join(types)} has none"
        )


def check_cost(args, spec, jobs, results_dir=None):
    """Print the cost's upper bound on stderr: per job (with what the last completed job of the
    same config and instance type cost, when results_dir holds one) and in total for `jobs`
    ([(config name, job count)]); return that total (None: unknown). ConfigError when --max-cost
    refuses the launch."""
    price, reason = job_cost.dearest_price(spec.region, spec.instance_types)
    print(job_cost.estimate_line(spec, price, reason), file=sys.stderr)
    for config_name, _ in jobs:
        last = results_dir and job_cost.previous_cost(results_dir, config_name, spec.instance_type)
        if last:
            print(
                f"  {config_name}: the last completed job cost {job_cost.dollars(last[0])} "
                f"({last[1]})",
                file=sys.stderr,
            )
    count = sum(number for _, number in jobs)
    total = None if price is None else count * job_cost.upper_bound(spec, price)
    if count > 1 and total is not None:
        print(f"  {count} jobs: at most {job_cost.dollars(total)} in total", file=sys.stderr)
    if args.max_cost is None:
        return total
    if total is None:
        raise ConfigError(f"--max-cost {args.max_cost}: the cost is unknown ({reason})")
    if total > args.max_cost:
        raise ConfigError(
            f"at most {job_cost.dollars(total)} is above --max-cost "
            f"{job_cost.dollars(args.max_cost)}: lower --max-run, the instance count or type, "
            "or raise --max-cost; nothing was launched"
        )
    return total


def check_budget(args, session, bound):
    """With --budget: ConfigError unless this project's spend so far (SageMaker's records and the
    cached prices) plus `bound`, the new jobs' most, stays within it."""
    if args.budget is None:
        return
    if bound is None:
        raise ConfigError(
            f"--budget {args.budget}: the new job's cost is unknown (prices: {job_cost.REFRESH})"
        )
    spent, unpriced = job_cost.project_spend(session, args.region)
    if unpriced:
        types = ", ".join(sorted(unpriced))
        raise ConfigError(f"--budget {args.budget}: no price for {types} ({job_cost.REFRESH})")
    if spent + bound > args.budget:
        raise ConfigError(
            f"this project's jobs have cost {job_cost.dollars(spent)} so far (running ones at "
            f"their bound); with at most {job_cost.dollars(bound)} more that is above --budget "
            f"{job_cost.dollars(args.budget)}; nothing was launched"
        )
    print(
        f"budget: {job_cost.dollars(spent)} spent of {job_cost.dollars(args.budget)}, "
        f"at most {job_cost.dollars(bound)} more",
        file=sys.stderr,
    )


class JobParser(options.SuggestingParser):
    """A launcher script's parser: an option of train.py's given here says where it goes."""

    def hint(self, unknown_option):
        train_options = options.build_parser()._option_string_actions
        if unknown_option in train_options and unknown_option not in ("-h", "--help"):
            key = unknown_option.lstrip("-").replace("-", "_")
            return f"{unknown_option} is train.py's option: set `{key}: ...` in the config YAML"
        return super().hint(unknown_option)


def parser_from_doc(doc):
    """A parser described by a script's docstring: its first line, and its examples below."""
    return JobParser(
        description=doc.split("\n")[0],
        epilog=doc.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def writable_folder(text):
    """An argparse type: a folder that exists or can be made, checked before any job starts
    (a job launched and then unable to save its results is money spent for nothing)."""
    path = Path(text)
    existing = next(folder for folder in [path, *path.parents] if folder.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {existing}")
    return path


def add_result_options(parser, results_dir, shown):
    parser.add_argument(
        "--out-dir",
        type=writable_folder,
        default=results_dir,
        help=f"where result folders go (default: {shown})",
    )
    parser.add_argument(
        "--poll-seconds",
        type=options.positive_float,
        default=30,
        help="status check interval (default: 30)",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="return after submitting; fetch later with --fetch NAME",
    )


# A warm pool keeps this folder from one job to the next on its instance (SageMaker's persistent
# cache): what a job downloads or builds there, the next job on the instance finds.
WARM_POOL_CACHE = "/opt/ml/sagemaker/warmpoolcache"


def warm_pool_caches():
    """The environment that keeps src/requirements.txt's packages (src/container_entry.py
    installs them into WARM_POOL_CACHE), pip's downloads and torch's downloaded weights in the
    warm pool's cache: a reused instance installs and downloads only what changed."""
    return {
        "WARM_POOL_CACHE": WARM_POOL_CACHE,
        "PIP_CACHE_DIR": f"{WARM_POOL_CACHE}/pip",
        "TORCH_HOME": f"{WARM_POOL_CACHE}/torch",
    }


def job_spec(args):
    from launcher.job_request import JobSpec, default_image_uri, role_arn

    # Unbuffered, train.py's lines reach the logs as they are printed, not at exit.
    environment = {"PYTHONUNBUFFERED": "1"}
    if getattr(args, "keep_alive", 0):
        environment.update(warm_pool_caches())
    #% if cookiecutter.experiment_tracking == "mlflow"
    if args.mlflow_tracking_arn:
        environment.update(
            MLFLOW_TRACKING_URI=args.mlflow_tracking_arn, MLFLOW_EXPERIMENT_NAME=args.exp_name
        )
    #% endif
    types = [args.instance_type, *getattr(args, "instance_fallback", [])]
    try:
        images = {args.image_uri or default_image_uri(args.region, name) for name in types}
    except ValueError as error:
        raise ConfigError(f"no training image: {error}; pass --image-uri") from None
    if len(images) > 1:  # a CPU type among GPU ones: one job has one image
        raise ConfigError(
            f"{', '.join(types)} need different training images ({', '.join(sorted(images))}): "
            "fall back to types of one kind (all GPU, or all CPU), or pass --image-uri"
        )
    (image_uri,) = images
    try:
        role = role_arn(args.role, args.region)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return JobSpec(
        region=args.region,
        role_arn=role,
        image_uri=image_uri,
        instance_type=args.instance_type,
        instance_fallback=tuple(getattr(args, "instance_fallback", [])),
        instance_count=args.instance_count,
        dataset_uri=args.dataset_uri,
        experiment=args.exp_name,
        input_mode=args.input_mode,
        use_spot=args.use_spot,
        max_run=args.max_run,
        max_wait=args.max_wait,
        max_pending=getattr(args, "max_pending", None),
        keep_alive=getattr(args, "keep_alive", 0),
        checkpoint_uri=args.checkpoint_uri,
        environment=environment,
        distributed=args.distributed,
        processes_per_host=args.processes_per_host,
    )
