"""upload_dataset.py against moto's S3: sync semantics, resume, and the URI it hands on."""

import os
import re

import prepare_dataset
import pytest
from aws_fakes import PROJECT_ROOT, REGION, run_script

from launcher import aws_env, s3_sync

UPLOAD = PROJECT_ROOT / "scripts" / "upload_dataset.py"
BUCKET = aws_env.default_bucket(REGION)


@pytest.fixture
def dataset(tmp_path):
    """A tiny dataset as src/data.py reads it, a file big enough for a multipart upload, and a
    .gitkeep to leave out."""
    folder = tmp_path / "dataset"
    prepare_dataset.prepare_synthetic(folder, 20, 10, seed=0)
    (folder / "extra").mkdir()
    (folder / "extra" / "big.bin").write_bytes(os.urandom(s3_sync.PART_SIZE + 12345))
    (folder / ".gitkeep").touch()
    return folder


def regular_files(folder):
    """What an upload sends: regular, not hidden, files."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def smallest_file(folder):
    return min(regular_files(folder), key=lambda path: (path.stat().st_size, path))


def key_of(path, folder):
    return f"dataset/{path.relative_to(folder).as_posix()}"


def upload(*options, cwd):
    return run_script([UPLOAD, *map(str, options)], env=dict(os.environ), cwd=cwd)


def stored(s3, prefix="dataset/"):
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        for item in listing
    }


def sent(stdout):
    files, mib, skipped = re.search(
        r"(\d+) files sent \(([\d.]+) MiB\), (\d+) unchanged", stdout
    ).groups()
    return int(files), float(mib), int(skipped)


def test_upload_creates_the_default_bucket_and_prints_the_dataset_uri(aws, dataset, tmp_path):
    done = upload("--upload-dir", dataset, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    s3 = aws.client("s3")
    files = regular_files(dataset)
    assert stored(s3) == {key_of(path, dataset): path.read_bytes() for path in files}
    total_mib = sum(path.stat().st_size for path in files) / 2**20
    assert sent(done.stdout) == (len(files), round(total_mib, 1), 0)
    assert f"--dataset-uri s3://{BUCKET}/dataset\n" in done.stdout


def test_unchanged_rerun_sends_nothing_and_a_changed_file_is_sent_again(aws, dataset, tmp_path):
    assert upload("--upload-dir", dataset, cwd=tmp_path).returncode == 0

    count = len(regular_files(dataset))
    again = upload("--upload-dir", dataset, cwd=tmp_path)
    assert sent(again.stdout) == (0, 0.0, count)

    small = smallest_file(dataset)
    small.write_bytes(os.urandom(small.stat().st_size))  # same size, other content
    changed = upload("--upload-dir", dataset, cwd=tmp_path)
    assert sent(changed.stdout) == (1, 0.0, count - 1)
    assert stored(aws.client("s3"))[key_of(small, dataset)] == small.read_bytes()


def test_interrupted_upload_is_completed_by_a_rerun(aws, dataset):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    broken = aws.client("s3")
    count, lost = len(regular_files(dataset)), smallest_file(dataset)

    def connection_drops(params, **_):
        if params["Key"] == key_of(lost, dataset):
            raise ConnectionError("connection reset")

    broken.meta.events.register("before-parameter-build.s3.PutObject", connection_drops)

    failed = rf"1 of {count} files failed(.|\n)*{lost.relative_to(dataset)}: ConnectionError"
    with pytest.raises(RuntimeError, match=failed):
        s3_sync.upload(broken, dataset, BUCKET, "dataset")
    assert len(stored(s3)) == count - 1

    files, sent_bytes, skipped = s3_sync.upload(s3, dataset, BUCKET, "dataset")
    assert (files, sent_bytes, skipped) == (1, lost.stat().st_size, count - 1)
    assert len(stored(s3)) == count
    assert s3_sync.upload(s3, dataset, BUCKET, "dataset") == (0, 0, count)


def test_prefix_puts_the_dataset_in_a_sub_folder(aws, dataset, tmp_path):
    done = upload("--upload-dir", dataset, "--prefix", "v2", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert set(stored(aws.client("s3"))) == {
        f"dataset/v2/{path.relative_to(dataset).as_posix()}" for path in regular_files(dataset)
    }
    assert f"--dataset-uri s3://{BUCKET}/dataset/v2\n" in done.stdout


def test_missing_dataset_fails_with_a_hint_and_creates_nothing(aws, tmp_path):
    done = upload("--upload-dir", tmp_path / "nothing", cwd=tmp_path)

    assert done.returncode == 1
    assert "scripts/prepare_dataset.py synthetic" in done.stderr
    assert aws.client("s3").list_buckets()["Buckets"] == []


def test_a_bucket_other_than_sagemakers_must_exist(aws, dataset, tmp_path):
    done = upload("--upload-dir", dataset, "--bucket", "someone-elses-bucket", cwd=tmp_path)

    assert done.returncode == 1
    assert "bucket someone-elses-bucket does not exist" in done.stderr
    assert aws.client("s3").list_buckets()["Buckets"] == []


def test_predicted_etag_matches_what_s3_reports_for_single_and_multipart(aws, dataset):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3_sync.upload(s3, dataset, BUCKET, "dataset")

    for key, (size, etag) in s3_sync.remote_objects(s3, BUCKET, "dataset").items():
        path = dataset / key.removeprefix("dataset/")
        assert (size, etag) == (path.stat().st_size, s3_sync.predicted_etag(path))
    big = dataset / "extra" / "big.bin"
    assert s3_sync.predicted_etag(big).endswith("-2")


def test_links_hidden_and_special_files_are_named_and_never_sent(aws, dataset, tmp_path):
    outside = tmp_path / "outside"
    (outside / "secrets").mkdir(parents=True)
    (outside / "secret.txt").write_text("credentials")
    (outside / "secrets" / "key.pem").write_text("private key")
    files = regular_files(dataset)
    extra = dataset / "extra"
    (extra / "secret.txt").symlink_to(outside / "secret.txt")
    (extra / "secrets").symlink_to(outside / "secrets", target_is_directory=True)
    (extra / ".DS_Store").write_bytes(b"finder")
    os.mkfifo(extra / "pipe")

    done = upload("--upload-dir", dataset, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert set(stored(aws.client("s3"))) == {key_of(path, dataset) for path in files}
    (skipped,) = [line for line in done.stdout.splitlines() if line.startswith("Skipped")]
    assert skipped.startswith("Skipped 4: ")
    for shown in [
        "extra/.DS_Store (hidden)",
        f"extra/secret.txt (a link, to {outside / 'secret.txt'})",
        f"extra/secrets (a link, to {outside / 'secrets'})",
        "extra/pipe (not a regular file)",
    ]:
        assert shown in skipped


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--workers", "0", "argument --workers: must be from 1 to 64, got 0"),
        ("--workers", "-3", "argument --workers: must be from 1 to 64, got -3"),
        ("--workers", "1000", "argument --workers: must be from 1 to 64, got 1000"),
        ("--workers", "many", "argument --workers: invalid whole number value: 'many'"),
        ("--bucket", "My_Bucket", "argument --bucket: 'My_Bucket' is not an S3 bucket name"),
        ("--bucket", "s3://bucket", "argument --bucket: 's3://bucket' is not an S3 bucket name"),
        ("--bucket", "ab", "argument --bucket: 'ab' is not an S3 bucket name"),
        ("--region", "mars-1", "argument --region: 'mars-1' is not an AWS region name"),
        ("--region", "us-east-１", "argument --region: 'us-east-１' is not an AWS region name"),
    ],
)
def test_bad_upload_options_are_refused_in_one_line_before_any_aws_call(
    aws_call_recorder, dataset, tmp_path, option, value, message
):
    done = upload("--upload-dir", dataset, option, value, cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"upload_dataset.py: error: {message}")
    assert aws_call_recorder == []


def test_a_rerun_aborts_the_multipart_uploads_an_interrupted_run_left(aws, dataset, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    key = "dataset/extra/big.bin"
    left = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key=key, UploadId=left, PartNumber=1, Body=b"x" * 5 * 2**20)

    done = upload("--upload-dir", dataset, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "Aborted 1 unfinished multipart upload(s) of an earlier run" in done.stdout
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert sent(done.stdout)[0] == len(regular_files(dataset))
