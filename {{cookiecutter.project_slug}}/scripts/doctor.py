"""Check what a training job needs from the AWS account: ✓, or ✗ with the fix on one line.

    python scripts/doctor.py                         # the project's defaults
    python scripts/doctor.py --instance-type ml.g5.xlarge --use-spot
    python scripts/doctor.py --keep-alive 600         # warm pools too: their quota must be above 0
    python scripts/doctor.py --instance-type ml.g5.xlarge --instance-fallback ml.g6.xlarge

Credentials (and that they are of the rendered account), the region, the execution role (it
exists, trusts SageMaker, you may pass it), the bucket and the dataset (what src/data.py reads),
the training image, the Service Quotas of the instance type and of each fallback (0 is the
common first-job failure), and Docker for a custom container. "!" marks a warning or what could
not be checked.
The exit code is 1 when any check fails.
"""

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
from launcher import aws_env, job_checks, job_options

# The job options whose needs the doctor checks, as run_job.py takes them.
CHECKED_OPTIONS = ["--instance-type", "--instance-fallback", "--role", "--dataset-uri"]
CHECKED_OPTIONS += ["--use-spot", "--keep-alive"]


def build_parser():
    parser = job_options.parser_from_doc(__doc__)
    job_options.add_options(parser, *CHECKED_OPTIONS)
    aws_env.add_region_option(parser)
    return parser


def main(argv=None):
    from launcher.job_request import role_arn

    args = build_parser().parse_args(argv)
    dataset_uri = args.dataset_uri or aws_env.dataset_uri(aws_env.default_bucket(args.region))
    try:
        role = role_arn(args.role, args.region)
    except ValueError as error:
        sys.exit(f"doctor.py: error: {error}")
    checks = job_checks.all_checks(
        aws_env.boto_session(args.region),
        args.region,
        role,
        dataset_uri,
        [args.instance_type, *args.instance_fallback],
        job_checks.usages(args.use_spot, args.keep_alive),
    )
    for check in checks:
        print("\n".join(check.lines()))
    failed = sum(check.passed is False for check in checks)
    print(f"{failed} check(s) failed" if failed else "ready to launch")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(aws_env.run_script(main))
