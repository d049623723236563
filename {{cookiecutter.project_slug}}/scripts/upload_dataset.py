"""Upload dataset/ to S3 as the training channel of SageMaker jobs.

    python scripts/upload_dataset.py                  # -> s3://sagemaker-<region>-<account>/dataset
    python scripts/upload_dataset.py --prefix v2      # -> .../dataset/v2

It syncs: a file already in S3 with the same size and checksum is skipped, so an unchanged rerun
sends nothing and a rerun after an interruption sends only what is missing. The checksum is S3's
ETag, which for an upload made by this script is predictable from the file (MD5 of each part).
"""

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
import options
from launcher import aws_env, project, s3_sync

MAX_WORKERS = 64


def parse_args(argv=None):
    parser = options.SuggestingParser(
        description="Upload a dataset folder to S3 (skipping files already there).",
        epilog="Prints the --dataset-uri to pass to scripts/run_job.py.",
    )
    parser.add_argument(
        "--upload-dir",
        type=Path,
        default=project.DATASET_DIR,
        help="folder to upload, as src/data.py reads it (default: the project's dataset/)",
    )
    aws_env.add_region_option(parser)
    parser.add_argument(
        "--bucket",
        type=aws_env.bucket_name,
        help="S3 bucket (default: SageMaker's own, sagemaker-<region>-<account>)",
    )
    parser.add_argument(
        "--prefix", default="", help="sub-folder under dataset/ (default: none), e.g. v2"
    )
    parser.add_argument(
        "--workers",
        type=options.whole_number(1, MAX_WORKERS),
        default=10,
        help=f"parallel transfers, 1 to {MAX_WORKERS} (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    folder = args.upload_dir.resolve()
    files, skipped = s3_sync.local_files(folder) if folder.is_dir() else ({}, [])
    if skipped:
        shown = ", ".join(skipped[:5]) + (
            f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        )
        print(f"Skipped {len(skipped)}: {shown}; only regular files inside {folder} are sent")
    if not files:
        raise SystemExit(
            f"upload_dataset.py: error: {folder} has no files; "
            "run `python scripts/prepare_dataset.py synthetic` (or your data) first"
        )
    import data  # src/data.py, torch with it: only once there is something to check

    problems = data.problems(folder)  # what src/data.py reads
    if problems:
        raise SystemExit(
            f"upload_dataset.py: error: {folder} is not a dataset src/data.py reads: "
            f"{'; '.join(problems)}; prepare it with scripts/prepare_dataset.py"
        )
    bucket = args.bucket or aws_env.default_bucket(args.region)
    prefix = aws_env.split_s3_uri(aws_env.dataset_uri(bucket, args.prefix))[1]
    uri = f"s3://{bucket}/{prefix}"
    s3 = aws_env.boto_session(args.region).client("s3")
    try:
        s3_sync.ensure_bucket(
            s3, bucket, args.region, create=bucket == aws_env.default_bucket(args.region)
        )
        print(f"Syncing {folder} -> {uri}")
        sent, sent_bytes, unchanged = s3_sync.upload(s3, folder, bucket, prefix, args.workers)
    except KeyboardInterrupt:
        try:  # the transfer manager cancelled its transfers; leave no parts behind in S3
            s3_sync.abort_unfinished_uploads(s3, bucket, prefix)
        except Exception:
            pass  # the next run aborts them
        raise SystemExit("\nupload_dataset.py: interrupted; rerun to send the rest") from None
    except RuntimeError as error:
        raise SystemExit(f"upload_dataset.py: error: {error}") from None
    except Exception as error:
        raise SystemExit(f"upload_dataset.py: error: {aws_env.error_message(error)}") from None
    sent_mib = sent_bytes / s3_sync.MiB
    print(f"Done: {sent} files sent ({sent_mib:.1f} MiB), {unchanged} unchanged skipped.")
    print(f"Train on it: python scripts/run_job.py --dataset-uri {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(aws_env.run_script(main))
