"""A folder synced to S3: what is there already (same size and ETag) is skipped, so an unchanged
rerun sends nothing and a rerun after an interruption sends only what is missing. S3's ETag of an
upload made here is predictable from the file (MD5 of each part). scripts/upload_dataset.py is the
command line.
"""

import hashlib
import os
import sys
import threading

from launcher import aws_env

MiB = 1024 * 1024
# One part size for uploading and for predicting the ETag, so unchanged files are recognised.
PART_SIZE = 8 * MiB


def local_files(folder):
    """(relative POSIX path -> file, [what was left out and why]).

    Only regular files inside the folder are sent: never what a link points at (it may lie
    outside), nor hidden files such as .DS_Store (the project's own .gitkeep goes unmentioned).
    """
    files, skipped = {}, []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            if path.name != ".gitkeep" and not path.is_dir():
                skipped.append(f"{relative} (hidden)")
        elif path.is_symlink():
            skipped.append(f"{relative} (a link, to {os.readlink(path)})")
        elif path.is_file():
            files[relative] = path
        elif not path.is_dir():
            skipped.append(f"{relative} (not a regular file)")
    return files, skipped


def predicted_etag(path, threshold=PART_SIZE, part_size=PART_SIZE):
    """The ETag S3 gives this file when s3transfer uploads it with these settings."""
    from s3transfer.utils import ChunksizeAdjuster

    size = path.stat().st_size
    part_size = ChunksizeAdjuster().adjust_chunksize(part_size, size)
    digests = []
    with path.open("rb") as stream:
        while chunk := stream.read(part_size):
            digests.append(hashlib.md5(chunk))
    if size < threshold:
        return (digests[0] if digests else hashlib.md5()).hexdigest()
    return hashlib.md5(b"".join(d.digest() for d in digests)).hexdigest() + f"-{len(digests)}"


def remote_objects(s3, bucket, prefix):
    """Key -> (size, ETag) of everything under the prefix."""
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            objects[item["Key"]] = (item["Size"], item["ETag"].strip('"'))
    return objects


def abort_unfinished_uploads(s3, bucket, prefix):
    """Abort multipart uploads an interrupted run left under the prefix: S3 keeps (and bills)
    their parts until then, and a rerun sends those files again whole."""
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix + "/")
    unfinished = [upload for page in pages for upload in page.get("Uploads", [])]
    for upload in unfinished:
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    if unfinished:
        print(f"Aborted {len(unfinished)} unfinished multipart upload(s) of an earlier run")
    return len(unfinished)


def ensure_bucket(s3, bucket, region, create):
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code not in {"404", "NoSuchBucket"}:
            raise
    if not create:
        raise SystemExit(
            f"upload_dataset.py: error: bucket {bucket} does not exist; create it first"
        )
    print(f"Creating bucket {bucket} in {region}")
    location = {} if region == "us-east-1" else {"LocationConstraint": region}
    s3.create_bucket(Bucket=bucket, **({"CreateBucketConfiguration": location} if location else {}))


class ProgressBar:
    """Bytes sent so far, redrawn in place on a terminal (transfer threads call it)."""

    def __init__(self, total, stream=sys.stderr):
        self.total, self.sent, self.stream = total, 0, stream
        self.lock = threading.Lock()

    def __call__(self, sent_now):
        with self.lock:
            self.sent += sent_now
            if self.stream.isatty():
                done = self.sent / self.total if self.total else 1.0
                bar = "#" * int(done * 30)
                self.stream.write(
                    f"\r[{bar:<30}] {done:4.0%} {self.sent / MiB:.1f}/{self.total / MiB:.1f} MiB"
                )
                self.stream.flush()

    def close(self):
        if self.stream.isatty():
            self.stream.write("\n")


def upload(s3, folder, bucket, prefix, workers=10):
    """Sync folder -> s3://bucket/prefix; returns (sent files, sent bytes, skipped files).

    Raises after the transfers that could finish have finished; a rerun completes the rest.
    """
    from boto3.s3.transfer import ProgressCallbackInvoker, TransferConfig, create_transfer_manager

    files, _ = local_files(folder)
    abort_unfinished_uploads(s3, bucket, prefix)
    existing = remote_objects(s3, bucket, prefix)
    to_send = {
        f"{prefix}/{name}": path
        for name, path in files.items()
        if existing.get(f"{prefix}/{name}") != (path.stat().st_size, predicted_etag(path))
    }
    progress = ProgressBar(sum(path.stat().st_size for path in to_send.values()))
    config = TransferConfig(
        multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=workers
    )
    failures = []
    try:
        with create_transfer_manager(s3, config) as manager:
            futures = {
                key: manager.upload(
                    str(path), bucket, key, subscribers=[ProgressCallbackInvoker(progress)]
                )
                for key, path in to_send.items()
            }
            for key, future in futures.items():
                try:
                    future.result()
                except Exception as error:  # one file failing must not hide the others
                    failures.append(f"{key}: {aws_env.error_message(error)}")
    finally:
        progress.close()
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {len(to_send)} files failed (rerun to retry them):\n  "
            + "\n  ".join(failures)
        )
    return len(to_send), progress.sent, len(files) - len(to_send)
