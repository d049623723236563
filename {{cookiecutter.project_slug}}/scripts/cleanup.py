"""List what this project left running or stored on AWS; once you confirm, stop and delete it.

    python scripts/cleanup.py              # list, then ask before stopping or deleting anything
    python scripts/cleanup.py --yes        # no question (the last command of a class; CI)
    python scripts/cleanup.py --keep-data  # all but the dataset on S3

What it finds: this project's running training jobs (stopped: they save a checkpoint), warm
pools (released), running tuning jobs (stopped), its S3 prefixes in the SageMaker bucket
(dataset/ and <experiment>-*/: code, models, outputs, checkpoints) and, for a custom container,
its ECR repository. Jobs are this project's by their `project` tag. Nothing local is touched
(result/, dataset/). The exit code is 1 when something could not be stopped or deleted.
"""

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
from launcher import aws_env, cleanup, job_options, project


def build_parser():
    parser = job_options.parser_from_doc(__doc__)
    parser.add_argument("--yes", action="store_true", help="stop and delete without asking")
    parser.add_argument(
        "--keep-data", action="store_true", help="leave s3://<bucket>/dataset/ in place"
    )
    aws_env.add_region_option(parser)
    return parser


def confirmed():
    """Whether the user typed the project's name (a plain y is too easy to give by habit)."""
    if not sys.stdin.isatty():
        print("nothing stopped or deleted: run again with --yes, or in a terminal to confirm")
        return False
    answer = input(f"Type {project.PROJECT_SLUG} to stop and delete all of this: ")
    if answer.strip() != project.PROJECT_SLUG:
        print("nothing stopped or deleted")
        return False
    return True


def main(argv=None):
    args = build_parser().parse_args(argv)
    bucket = aws_env.default_bucket(args.region)
    found = cleanup.find(aws_env.boto_session(args.region), bucket)
    if args.keep_data:
        found = [leftover for leftover in found if leftover.name != f"s3://{bucket}/dataset/"]
    if not found:
        print(f"nothing of {project.PROJECT_SLUG} is running or stored in {args.region}")
        return 0
    print(f"{project.PROJECT_SLUG} in {args.region}:")
    for leftover in found:
        print(f"  {leftover.kind:<12} {leftover.name}: {leftover.detail}")
    if not (args.yes or confirmed()):
        return 0
    failed = 0
    for leftover in found:
        try:
            leftover.remove()
        except Exception as error:  # the rest still goes; the exit code says it
            failed += 1
            print(f"cleanup.py: {leftover.name}: {aws_env.error_message(error)}", file=sys.stderr)
            continue
        done = {"running job": "stopped", "tuning job": "stopped", "warm pool": "released"}
        print(f"{done.get(leftover.kind, 'deleted')} {leftover.kind} {leftover.name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(aws_env.run_script(main))
