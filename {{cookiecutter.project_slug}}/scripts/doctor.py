"""Check what a training job needs from the AWS account: ✓, or ✗ with the fix on one line.

    python scripts/doctor.py                         # the project's defaults
    python scripts/doctor.py --instance-type ml.g5.xlarge --use-spot

Credentials (and that they are of the rendered account), the region, the execution role (it
exists, trusts SageMaker, you may pass it), the bucket and the dataset (what src/data.py
reads), the training image, the Service Quotas of the instance type (0 is the common first-job
failure), and Docker for a custom container. "!" marks a warning or what could not be checked.
The exit code is 1 when any check fails.
"""

import argparse
import os
import sys

import aws_env
import defaults
import job_checks
import job_options


def build_parser():
    parser = job_options.parser_from_doc(__doc__)
    aws_env.add_region_option(parser)
    parser.add_argument(
        "--instance-type", default=defaults.INSTANCE_TYPE, help="default: %(default)s"
    )
    parser.add_argument(
        "--role",
        default=os.environ.get("SAGEMAKER_ROLE_ARN") or defaults.SAGEMAKER_ROLE,
        help="execution role name or ARN (default: $SAGEMAKER_ROLE_ARN, else "
        f"{defaults.SAGEMAKER_ROLE})",
    )
    parser.add_argument("--dataset-uri", help="default: s3://sagemaker-<region>-<account>/dataset")
    parser.add_argument(
        "--use-spot",
        action=argparse.BooleanOptionalAction,
        default=defaults.USE_SPOT_INSTANCES,
        help="check the spot quota instead of the on-demand one (default: %(default)s)",
    )
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="warm pools too: a 0 warm pool quota fails instead of warning",
    )
    return parser


def main(argv=None):
    from job_request import role_arn

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
        args.instance_type,
        job_checks.usages(args.use_spot, args.keep_alive),
    )
    for check in checks:
        print("\n".join(check.lines()))
    failed = sum(check.passed is False for check in checks)
    print(f"{failed} check(s) failed" if failed else "ready to launch")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
