"""upload_dataset.py against moto's S3: sync semantics, resume, and the URI it hands on."""

import os
import re

import aws_env
import pytest
import upload_dataset
from aws_fakes import PROJECT_ROOT, REGION, run_script

UPLOAD = PROJECT_ROOT / "scripts" / "upload_dataset.py"
BUCKET = aws_env.default_bucket(REGION)


@pytest.fixture
def dataset(tmp_path):
    """MNIST/raw/ files, one big enough for a multipart upload, and a .gitkeep to leave out."""
    folder = tmp_path / "dataset"
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(os.urandom(upload_dataset.PART_SIZE + 12345))
    for name in ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (raw / name).write_bytes(os.urandom(3000))
    (folder / ".gitkeep").touch()
    return folder


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
    assert stored(s3) == {
        f"dataset/{path.relative_to(dataset).as_posix()}": path.read_bytes()
        for path in dataset.rglob("*-ubyte")
    }
    total_mib = sum(path.stat().st_size for path in dataset.rglob("*-ubyte")) / 2**20
    assert sent(done.stdout) == (4, round(total_mib, 1), 0)
    assert f"--dataset-uri s3://{BUCKET}/dataset\n" in done.stdout


def test_unchanged_rerun_sends_nothing_and_a_changed_file_is_sent_again(aws, dataset, tmp_path):
    assert upload("--upload-dir", dataset, cwd=tmp_path).returncode == 0

    again = upload("--upload-dir", dataset, cwd=tmp_path)
    assert sent(again.stdout) == (0, 0.0, 4)

    labels = dataset / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(os.urandom(3000))  # same size, other content
    changed = upload("--upload-dir", dataset, cwd=tmp_path)
    assert sent(changed.stdout) == (1, 0.0, 3)
    assert (
        stored(aws.client("s3"))["dataset/MNIST/raw/t10k-labels-idx1-ubyte"] == labels.read_bytes()
    )


def test_interrupted_upload_is_completed_by_a_rerun(aws, dataset):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    broken = aws.client("s3")

    def connection_drops(params, **_):
        if params["Key"].endswith("t10k-images-idx3-ubyte"):
            raise ConnectionError("connection reset")

    broken.meta.events.register("before-parameter-build.s3.PutObject", connection_drops)

    with pytest.raises(
        RuntimeError, match=r"1 of 4 files failed(.|\n)*t10k-images-idx3-ubyte: ConnectionError"
    ):
        upload_dataset.upload(broken, dataset, BUCKET, "dataset")
    assert len(stored(s3)) == 3

    files, sent_bytes, skipped = upload_dataset.upload(s3, dataset, BUCKET, "dataset")
    assert (files, sent_bytes, skipped) == (1, 3000, 3)
    assert len(stored(s3)) == 4
    assert upload_dataset.upload(s3, dataset, BUCKET, "dataset") == (0, 0, 4)


def test_prefix_puts_the_dataset_in_a_sub_folder(aws, dataset, tmp_path):
    done = upload("--upload-dir", dataset, "--prefix", "v2", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert set(stored(aws.client("s3"))) == {
        f"dataset/v2/{path.relative_to(dataset).as_posix()}" for path in dataset.rglob("*-ubyte")
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
    upload_dataset.upload(s3, dataset, BUCKET, "dataset")

    for key, (size, etag) in upload_dataset.remote_objects(s3, BUCKET, "dataset").items():
        path = dataset / key.removeprefix("dataset/")
        assert (size, etag) == (path.stat().st_size, upload_dataset.predicted_etag(path))
    big = dataset / "MNIST" / "raw" / "train-images-idx3-ubyte"
    assert upload_dataset.predicted_etag(big).endswith("-2")
