"""scripts/doctor.py against moto (STS, IAM, S3, ECR) and stand-ins for what moto lacks (Service
Quotas' SageMaker quotas, IAM's policy simulation): each check passes on a set-up account and
fails, with its fix, on the mistake it is there to catch; run_job.py refuses a launch the
cheap checks fail."""

import json
import os
import stat

import botocore.session
import doctor
import prepare_dataset
import pytest
from aws_fakes import FIXTURES, PROJECT_ROOT, REGION, run_script, upload_folder
from botocore.stub import Stubber

from launcher import aws_env, job_checks, project

BUCKET = aws_env.default_bucket(REGION)
DATASET_URI = aws_env.dataset_uri(BUCKET)
INSTANCE = "ml.g4dn.xlarge"  # one of the instance types the recorded quotas list


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """A synthetic dataset of this project's kind, small: the doctor reads only its file names."""
    folder = tmp_path_factory.mktemp("small-dataset")
    prepare_dataset.prepare_synthetic(folder, 20, 10, seed=0)
    return folder


@pytest.fixture
def account(aws, aws_stand_ins, small_dataset, tmp_path, monkeypatch):
    """An account set up for the project's jobs: the role (the aws fixture makes it), the
    dataset uploaded, an on-demand quota of 1, and for a custom container its image on ECR and
    a Docker that answers."""
    aws.client("s3").create_bucket(Bucket=BUCKET)
    upload_folder(aws.client("s3"), small_dataset, DATASET_URI)
    if project.CONTAINER == "custom":
        ecr = aws.client("ecr")
        ecr.create_repository(repositoryName=project.PROJECT_SLUG)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": 2,
                    "digest": "sha256:" + "0" * 64,
                },
                "layers": [],
            }
        )
        ecr.put_image(
            repositoryName=project.PROJECT_SLUG, imageManifest=manifest, imageTag="latest"
        )
        (tmp_path / "bin").mkdir()
        docker = fake_docker(tmp_path / "bin", 0)
        monkeypatch.setenv("PATH", f"{docker}{os.pathsep}{os.environ['PATH']}")
    return aws


def diagnose(capsys, *options):
    code = doctor.main(["--instance-type", INSTANCE, "--no-use-spot", *options])
    lines = capsys.readouterr().out.splitlines()
    return code, lines


def line_of(lines, name):
    (found,) = [i for i, line in enumerate(lines) if line[2:].startswith(name)]
    return lines[found], lines[found + 1] if found + 1 < len(lines) else ""


def test_the_recorded_quotas_have_the_shape_of_botocores_service_quotas_model():
    client = botocore.session.get_session().create_client(
        "service-quotas", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    recorded = json.loads((FIXTURES / "service_quotas_list_sagemaker.json").read_text())
    Stubber(client).add_response("list_service_quotas", recorded)  # raises on another shape


def test_a_set_up_account_passes_every_check(account, capsys):
    code, lines = diagnose(capsys)

    assert code == 0, "\n".join(lines)
    assert lines[-1] == "ready to launch"
    marks = {line.split(":")[0]: line[0] for line in lines if line[:1] in "✓✗!"}
    assert marks.pop(f"! quota {INSTANCE} for spot training job usage") == "!"  # 0: a warning
    assert marks.pop(f"! quota {INSTANCE} for training warm pool usage") == "!"
    assert set(marks.values()) == {"✓"}, lines
    names = {"credentials", "region", "execution role", "passing the role", "dataset"}
    names |= {"training image", f"quota {INSTANCE} for training job usage"}
    assert {key[2:] for key in marks} >= names


def test_a_role_that_does_not_trust_sagemaker_fails_with_the_trust_policy_to_add(account, tmp_path):
    ec2_trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}}
    account.client("iam").create_role(
        RoleName="Ec2Role",
        AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{**ec2_trust, "Action": "sts:AssumeRole"}]}
        ),
    )

    done = run_script(
        [PROJECT_ROOT / "scripts" / "doctor.py", "--role", "Ec2Role"],
        env=dict(os.environ),
        cwd=tmp_path,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    check, fix = line_of(lines, "execution role")
    assert check.startswith("✗") and "does not trust sagemaker.amazonaws.com" in check
    assert fix.strip().startswith("fix: add to its trust policy:") and '"sts:AssumeRole"' in fix
    assert lines[-1] == "1 check(s) failed"


def test_a_missing_role_fails(account, capsys):
    code, lines = diagnose(capsys, "--role", "NoSuchRole")

    check, fix = line_of(lines, "execution role")
    assert code == 1 and check == "✗ execution role: no role NoSuchRole" and "--role" in fix


def test_credentials_of_another_account_fail_before_anything_else(account, capsys, monkeypatch):
    monkeypatch.setattr(project, "AWS_ACCOUNT_ID", "999999999999")

    code, lines = diagnose(capsys)

    check, fix = line_of(lines, "credentials")
    assert code == 1 and check.startswith("✗") and "not this project's 999999999999" in check
    assert "AWS_PROFILE" in fix
    assert not any(line[2:].startswith("dataset") for line in lines)  # nothing else checked


def test_no_credentials_fail_with_how_to_get_them(account, capsys, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)

    code, lines = diagnose(capsys)

    check, _ = line_of(lines, "credentials")
    assert code == 1 and "no AWS credentials found" in check and "aws configure" in check


def test_a_region_without_sagemaker_fails(account, capsys):
    code, lines = diagnose(capsys, "--region", "xx-nowhere-1")

    check, _ = line_of(lines, "region")
    assert code == 1 and check == "✗ region: SageMaker is not in xx-nowhere-1"


def test_a_role_you_may_not_pass_fails(account, capsys):
    account.pass_role = "implicitDeny"

    code, lines = diagnose(capsys)

    check, fix = line_of(lines, "passing the role")
    assert code == 1 and "may not iam:PassRole" in check and "iam:PassRole" in fix


@pytest.mark.parametrize("problem", ["no bucket", "empty", "other files"])
def test_a_dataset_that_is_not_there_or_not_what_data_py_reads_fails(
    account, capsys, tmp_path, problem
):
    s3 = account.client("s3")
    uri = {"no bucket": "s3://no-such-bucket-here/dataset"}.get(problem, f"s3://{BUCKET}/other")
    if problem == "other files":
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "notes.txt").write_text("the data is elsewhere")
        upload_folder(s3, tmp_path / "notes", uri)

    code, lines = diagnose(capsys, "--dataset-uri", uri)

    check, fix = line_of(lines, "dataset")
    expected = {"no bucket": "no bucket no-such-bucket-here", "empty": f"nothing under {uri}"}
    assert code == 1 and check.startswith("✗")
    assert expected.get(problem, f"in {uri}") in check  # other files: data.py's own words
    assert "upload_dataset.py" in fix


def test_an_instance_type_without_a_training_image_fails(account, capsys, monkeypatch):
    monkeypatch.setattr(project, "CONTAINER", "prebuilt")

    code, lines = diagnose(capsys, "--instance-type", "ml.trn1.2xlarge")

    check, fix = line_of(lines, "training image")
    assert code == 1 and "not PyTorch" in check and "--image-uri" in fix


def test_a_custom_image_not_pushed_yet_fails(account, capsys, monkeypatch):
    monkeypatch.setattr(project, "CONTAINER", "custom")
    monkeypatch.setattr(project, "PROJECT_SLUG", "not-pushed")

    code, lines = diagnose(capsys)

    check, fix = line_of(lines, "training image")
    assert code == 1 and check.startswith("✗ training image: no ")
    assert fix.strip() == "fix: bash scripts/build_and_push.sh"


@pytest.mark.parametrize(
    ("options", "usage"),
    [
        ([], "training job usage"),
        (["--use-spot"], "spot training job usage"),
        (["--keep-alive", "600"], "training warm pool usage"),
    ],
    ids=["on-demand", "spot", "warm pool"],
)
def test_a_quota_of_0_fails_the_kind_of_job_it_is_for(
    account, aws_stand_ins, capsys, options, usage
):
    quota = f"{INSTANCE} for {usage}"
    aws_stand_ins.values[quota] = 0.0

    code, lines = diagnose(capsys, *options)

    check, fix = line_of(lines, f"quota {quota}")
    assert code == 1 and check == f"✗ quota {quota}: 0"
    assert "Service Quotas" in fix
    aws_stand_ins.values[quota] = 2.0
    code, lines = diagnose(capsys, *options)
    assert code == 0 and f"✓ quota {quota}: 2" in lines


def test_each_fallback_instance_type_has_its_quotas_checked(account, aws_stand_ins, capsys):
    fallback = "ml.m5.large"  # the other instance type the recorded quotas list
    aws_stand_ins.values[f"{fallback} for training job usage"] = 0.0

    code, lines = diagnose(capsys, "--instance-fallback", fallback)

    check, _ = line_of(lines, f"quota {fallback} for training job usage")
    assert code == 1 and check == f"✗ quota {fallback} for training job usage: 0"
    assert f"✓ quota {INSTANCE} for training job usage: 1" in lines  # the first type's, as well


def fake_docker(folder, exit_code):
    """A `docker` command whose `docker info` ends with exit_code, as a daemon up (0) or down."""
    docker = folder / "docker"
    docker.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return folder


def test_a_quota_never_changed_is_read_from_the_defaults(account, aws_stand_ins, capsys):
    quota = f"{INSTANCE} for training job usage"
    aws_stand_ins.values[quota] = 0.0
    aws_stand_ins.defaults_only.add(quota)  # not among the applied values, as on a new account

    code, lines = diagnose(capsys)

    assert code == 1 and f"✗ quota {quota}: 0" in lines


@pytest.mark.parametrize(
    ("docker", "passed", "detail"),
    [
        (None, False, "docker is not installed"),
        (1, False, "the Docker daemon does not answer"),
        (0, True, "the daemon answers"),
    ],
    ids=["not installed", "daemon down", "daemon up"],
)
def test_docker_is_checked_by_what_docker_info_answers(
    tmp_path, monkeypatch, docker, passed, detail
):
    folder = tmp_path if docker is None else fake_docker(tmp_path, docker)
    monkeypatch.setenv("PATH", str(folder))

    check = job_checks.docker()

    assert (check.passed, check.detail) == (passed, detail)


def test_docker_missing_fails_a_custom_container_only(account, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")

    check = job_checks.docker()

    assert check.passed is False and check.fix == "install Docker, then start it"
    _, lines = diagnose(capsys)
    listed = any(line[2:].startswith("Docker") for line in lines)
    assert listed == (project.CONTAINER == "custom")


def test_run_job_refuses_a_launch_the_quota_would_fail_and_points_to_the_doctor(
    account, aws_stand_ins, fake_sagemaker, tmp_path
):
    quota = f"{INSTANCE} for training job usage"
    aws_stand_ins.values[quota] = 0.0
    out = tmp_path / "results"
    run_job = [PROJECT_ROOT / "scripts" / "run_job.py", "--instance-type", INSTANCE]

    done = run_script(
        [*run_job, "--no-use-spot", "--out-dir", out], env=dict(os.environ), cwd=tmp_path
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"run_job.py: error: ✗ quota {quota}: 0" in done.stderr
    assert done.stderr.rstrip().endswith("python scripts/doctor.py checks the rest")
    assert fake_sagemaker.requests == [] and not out.exists()


def test_run_job_refuses_more_hosts_than_the_quota_allows(
    account, aws_stand_ins, fake_sagemaker, tmp_path
):
    quota = f"{INSTANCE} for training job usage"
    aws_stand_ins.values[quota] = 1.0  # a new account's: one instance
    out = tmp_path / "results"
    run_job = [PROJECT_ROOT / "scripts" / "run_job.py", "--instance-type", INSTANCE]

    done = run_script(
        [*run_job, "--instance-count", "2", "--no-use-spot", "--out-dir", out],
        env=dict(os.environ),
        cwd=tmp_path,
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"✗ quota {quota}: 1, below the 2 asked for" in done.stderr
    assert fake_sagemaker.requests == []
