"""tune.py: the tuning config is checked before any AWS call, --dry-run prints the request the
SDK's tuner sends, and a tuning job run against moto brings back the best trial and every score.

moto stores CreateHyperParameterTuningJob and answers DescribeHyperParameterTuningJob, but has
no ListTrainingJobsForHyperParameterTuningJob and runs no trials: `fake_tuner` plays those parts
(trials as moto training jobs with artifacts in S3, the best named in the description).
"""

import io
import json
import os
import re
import shutil
import tarfile

import pytest
from aws_fakes import PROJECT_ROOT, REGION, run_script

import options
from launcher import aws_env, job_config, job_cost, project

TUNE = PROJECT_ROOT / "scripts" / "tune.py"
BUCKET = aws_env.default_bucket(REGION)
ACCOUNT = "123456789012"  # moto's
TUNING = """\
strategy: Random
max-jobs: 3
max-parallel-jobs: 2
hyperparameters:
  epochs: 1
ranges:
  lr: {type: continuous, min: 0.001, max: 0.1, scaling: Logarithmic}
  width: {type: integer, min: 8, max: 16}
  batch-size: {type: categorical, values: [64, 128]}
"""


def tune(*options, cwd):
    return run_script([TUNE, "--poll-seconds", "0.2", *options], env=dict(os.environ), cwd=cwd)


@pytest.fixture
def tuning_config(tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text(TUNING)
    return path


def test_dry_run_prints_the_tuning_request_without_any_aws_call(
    aws_call_recorder, tuning_config, tmp_path
):
    done = tune("--dry-run", "--json", "--config", tuning_config, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    name = request["HyperParameterTuningJobName"]
    assert re.fullmatch(re.escape(f"{project.EXPERIMENT_NAME}-tune"[:19]) + r"-\d{12}", name)
    assert len(name) <= 32
    assert request["HyperParameterTuningJobConfig"] == {
        "Strategy": "Random",
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 2},
        "HyperParameterTuningJobObjective": {
            "Type": job_config.OBJECTIVE_TYPE,
            "MetricName": job_config.OBJECTIVE,
        },
        "ParameterRanges": {
            "ContinuousParameterRanges": [
                {"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
            ],
            "IntegerParameterRanges": [
                {"Name": "width", "MinValue": "8", "MaxValue": "16", "ScalingType": "Auto"}
            ],
            "CategoricalParameterRanges": [{"Name": "batch-size", "Values": ["64", "128"]}],
        },
        "TrainingJobEarlyStoppingType": "Off",
    }
    definition = request["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == (
        job_config.METRIC_DEFINITIONS
    )
    static = definition["StaticHyperParameters"]
    # The image's entry runs it as the trial's program; it runs train.py (a stop reaches it).
    assert static.pop("sagemaker_program") == "container_entry.py"
    assert static.pop("sagemaker_submit_directory").endswith("/sourcedir/sourcedir.tar.gz")
    assert static == {"epochs": "1"}
    assert definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == (
        aws_env.dataset_uri(BUCKET) + "/"
    )
    assert {"Key": "config", "Value": "tune"} in request["Tags"]
    assert definition["Environment"] == {"PYTHONUNBUFFERED": "1"}
    assert aws_call_recorder == []


def test_a_dry_run_shows_the_tuning_job_on_one_screen(aws_call_recorder, tuning_config, tmp_path):
    done = tune("--dry-run", "--config", tuning_config, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    name, *rows, last = done.stdout.splitlines()
    assert re.fullmatch(r"\S+-tune-\d{12}", name) and len(rows) <= 10
    shown = {row.split()[0]: row.split(None, 1)[1] for row in rows}
    assert shown["trials"] == "at most 3, 2 at a time, Random"
    assert shown["objective"] == f"{job_config.OBJECTIVE_TYPE} {job_config.OBJECTIVE}"
    assert shown["ranges"] == (
        "lr 0.001 to 0.1 (Logarithmic); width 8 to 16 (Auto); batch-size one of 64, 128"
    )
    assert shown["fixed"] == "epochs=1"  # not the SDK's sagemaker_program and code
    assert last == "(the whole CreateHyperParameterTuningJob request: add --json)"
    assert aws_call_recorder == []


def test_the_shipped_tuning_config_is_valid(aws_call_recorder, tmp_path):
    done = tune("--dry-run", "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["HyperParameterTuningJobConfig"]["Strategy"] == "Bayesian"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("  lr:", "  lrr:"), "unknown key 'lrr'; did you mean 'lr'?"),
        (("min: 0.001, max: 0.1", "min: 0.1, max: 0.001"), "min (0.1) must be below max"),
        (("min: 0.001, max: 0.1,", "min: 0, max: 0.1,"), "Logarithmic scaling needs min above 0"),
        (("type: integer, min: 8", "type: continuous, min: 8"), "use type: integer"),
        (("type: integer, min: 8", "type: integer, min: 0"), "argument --width: must be from 1 to"),
        (("values: [64, 128]", "values: [64, big]"), "argument --batch-size: invalid"),
        (("type: integer, min: 8", "type: integers, min: 8"), "type: continuous, integer or"),
        (("strategy: Random", "strategy: Randomly"), "did you mean 'Random'?"),
        (("max-parallel-jobs: 2", "max-parallel-jobs: 5"), "from 1 to max-jobs (3)"),
        (("strategy: Random", "strategy: Grid"), "categorical ranges only"),
        (("  epochs: 1", "  lr: 0.01"), "'lr' is both fixed and tuned"),
        (("  epochs: 1", "  epochs: 0"), "argument --epochs: must be at least 1"),
        (("max-jobs: 3", "max-job: 3"), "did you mean 'max-jobs'?"),
    ],
)
def test_bad_tuning_config_fails_before_any_aws_call(
    aws_call_recorder, tuning_config, tmp_path, change, message
):
    tuning_config.write_text(TUNING.replace(*change, 1))

    done = tune("--config", tuning_config, cwd=tmp_path)

    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert aws_call_recorder == []


def archive(name, content):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        member = tarfile.TarInfo(name)
        member.size = len(content)
        tar.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def fake_tuner(aws, monkeypatch):
    """Trials for each created tuning job: moto training jobs, scores, artifacts of each.
    lose_first_answer: the first CreateHyperParameterTuningJob creates the job and its trials,
    then answers as a throttled call, which botocore retries (as when an answer times out)."""
    from moto.core.responses import ActionResult
    from moto.s3.models import s3_backends
    from moto.sagemaker.exceptions import SagemakerClientError
    from moto.sagemaker.responses import SageMakerResponse

    class Requests(list):
        lose_first_answer = False

    class Throttled(SagemakerClientError):
        code = "ThrottlingException"  # one botocore retries

    requests, trials = Requests(), []
    create = SageMakerResponse.create_hyper_parameter_tuning_job

    def create_and_run_trials(self):
        request = json.loads(self.body)
        requests.append(request)
        result = create(self)
        definition = request["TrainingJobDefinition"]
        name = request["HyperParameterTuningJobName"]
        # moto's backends, not its HTTP API: a request made while serving this one could wait
        # on the server (a CI run saw tune.py's call time out after 60 s and its retry refused)
        sagemaker, s3 = self.sagemaker_backend, s3_backends[ACCOUNT]["aws"]
        output = definition["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        for number, (lr, accuracy) in enumerate([("0.01", 0.91), ("0.05", 0.97), ("0.002", 0.88)]):
            trial = f"{name}-{number + 1:03d}-0123abcd"
            tuned = {"lr": lr, "width": "8", "batch-size": "64"}
            finished = sagemaker.create_training_job(
                training_job_name=trial,
                hyper_parameters={**definition["StaticHyperParameters"], **tuned},
                algorithm_specification={
                    "TrainingImage": definition["AlgorithmSpecification"]["TrainingImage"],
                    "TrainingInputMode": "File",
                },
                role_arn=definition["RoleArn"],
                input_data_config=[],
                output_data_config=definition["OutputDataConfig"],
                resource_config=definition["ResourceConfig"],
                vpc_config=None,
                stopping_condition=definition["StoppingCondition"],
                tags=None,
                enable_network_isolation=False,
                enable_inter_container_traffic_encryption=False,
                enable_managed_spot_training=False,
                checkpoint_config=None,
                debug_hook_config=None,
                debug_rule_configurations=None,
                tensor_board_output_config=None,
                experiment_config=None,
            )
            seconds = 60 * (number + 1)  # moto serves these attributes as they are set
            finished.training_time_in_seconds = finished.billable_time_in_seconds = seconds
            bucket, key = aws_env.split_s3_uri(f"{output}/{trial}/output")
            s3.put_object(bucket, f"{key}/model.tar.gz", archive("model.pt", lr.encode()))
            s3.put_object(bucket, f"{key}/output.tar.gz", archive("metrics.csv", b"epoch"))
            metric = {"MetricName": job_config.OBJECTIVE, "Value": accuracy}
            trials.append(
                {
                    "TrainingJobName": trial,
                    "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{trial}",
                    "CreationTime": 1_700_000_000 + number,
                    "TrainingJobStatus": "Completed",
                    "TunedHyperParameters": tuned,
                    "FinalHyperParameterTuningJobObjectiveMetric": metric,
                    "ObjectiveStatus": "Succeeded",
                }
            )
        job = self.sagemaker_backend.hyper_parameter_tuning_jobs[name]
        job.best_training_job = max(
            trials, key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        )
        if requests.lose_first_answer and len(requests) == 1:
            raise Throttled("Rate exceeded")
        return result

    def list_trials(self):
        return ActionResult({"TrainingJobSummaries": trials})

    monkeypatch.setattr(
        SageMakerResponse, "create_hyper_parameter_tuning_job", create_and_run_trials
    )
    monkeypatch.setattr(
        SageMakerResponse,
        "list_training_jobs_for_hyper_parameter_tuning_job",
        list_trials,
        raising=False,
    )
    return requests


def test_tuning_job_against_moto_fetches_the_best_trial_and_every_score(
    aws, fake_tuner, tuning_config, tmp_path
):
    aws.client("s3").create_bucket(Bucket=BUCKET)
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})
    out = tmp_path / "tune-results"
    dry = tune("--dry-run", "--json", "--config", tuning_config, cwd=tmp_path)

    done = tune("--config", tuning_config, "--out-dir", out, cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    (request,) = fake_tuner
    expected = json.loads(dry.stdout)
    assert request["HyperParameterTuningJobConfig"] == expected["HyperParameterTuningJobConfig"]
    (folder,) = out.iterdir()
    assert folder.name == request["HyperParameterTuningJobName"]
    summary = json.loads((folder / "tuning.json").read_text())
    best = summary["best"]
    assert best["training_job"].endswith("-002-0123abcd")
    assert best["hyperparameters"]["lr"] == "0.05"
    assert best["objective"] == {"MetricName": job_config.OBJECTIVE, "Value": 0.97}
    assert summary["trials"] == 3 and summary["status"] == "Completed"
    rows = (folder / "trials.csv").read_text().splitlines()
    assert rows[0] == "training_job,status,objective,billable_s,cost_usd,lr,width,batch-size"
    assert sorted(int(row.split(",")[3]) for row in rows[1:]) == [60, 120, 180]
    assert summary["cost_usd"] == pytest.approx(360 * 0.736 / 3600)
    assert f"3 trial(s), cost {job_cost.dollars(360 * 0.736 / 3600)}" in done.stdout
    assert [row.split(",")[2] for row in rows[1:]] == ["0.97", "0.91", "0.88"]
    assert (folder / "best" / "model" / "model.pt").read_bytes() == b"0.05"
    assert json.loads((folder / "best" / "exp.json").read_text())["status"] == "Completed"
    assert "Best: " in done.stdout and f"{job_config.OBJECTIVE}=0.97" in done.stdout


def test_dry_run_works_with_a_source_folder_big_enough_for_a_multipart_upload(
    aws_call_recorder, tuning_config, tmp_path, monkeypatch, capsys
):
    import tune as tune_script

    from launcher import job_request

    source = tmp_path / "src"
    shutil.copytree(PROJECT_ROOT / "src", source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "vocabulary.bin").write_bytes(os.urandom(20 * 1024 * 1024))  # past 8 MB parts
    monkeypatch.setattr(job_request, "SOURCE_DIR", source)

    code = tune_script.main(["--dry-run", "--json", "--config", str(tuning_config)])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["HyperParameterTuningJobConfig"]["Strategy"] == "Random"
    assert aws_call_recorder == []


def test_offline_upload_answers_use_members_of_botocores_s3_model():
    import botocore.session

    from launcher import job_request

    model = botocore.session.get_session().get_service_model("s3")
    for operation in job_request.OFFLINE_UPLOAD_CALLS:
        assert model.operation_model(operation).output_shape is not None
    outputs = {"CreateMultipartUpload": "UploadId", "UploadPart": "ETag"}
    outputs["CompleteMultipartUpload"] = "ETag"
    for operation, member in outputs.items():
        assert member in model.operation_model(operation).output_shape.members


def source_with_clutter(tmp_path, monkeypatch):
    """A copy of src/ holding what must never leave this machine, in use as the source folder."""
    from launcher import job_request

    source = tmp_path / "src"
    shutil.copytree(PROJECT_ROOT / "src", source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / ".env").write_text("AWS_SECRET_ACCESS_KEY=never-upload-me\n")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "train.cpython-313.pyc").write_bytes(b"cache")
    monkeypatch.setattr(job_request, "SOURCE_DIR", source)
    return source


def test_trials_get_exactly_the_code_a_training_job_gets_and_never_the_env_file(
    aws, fake_tuner, tuning_config, tmp_path, monkeypatch, capsys
):
    import run_job as run_job_script
    import tune as tune_script

    from launcher import job_options, job_request

    source_with_clutter(tmp_path, monkeypatch)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    out = tmp_path / "tune-results"

    tune_script.main(["--config", str(tuning_config), "--no-wait", "--out-dir", str(out)])

    assert "Launched tuning job" in capsys.readouterr().out
    (request,) = fake_tuner
    uri = request["TrainingJobDefinition"]["StaticHyperParameters"]["sagemaker_submit_directory"]
    bucket, key = aws_env.split_s3_uri(uri)
    with tarfile.open(
        fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    ) as tar:
        trial_files = sorted(member.name for member in tar if member.isfile())
    # What a training job of the same code uploads (the SDK applies its ignore patterns).
    (tmp_path / "exp.yaml").write_text("epochs: 1\n")
    config = job_config.load_config(tmp_path / "exp.yaml", options.build_parser())
    spec = job_options.job_spec(run_job_script.parse_args([]))
    session = job_request.online_session(REGION, BUCKET)
    job = job_request.build_request(spec, config, "code-listing", session)
    (code,) = [c for c in job["InputDataConfig"] if c["ChannelName"] == "code"]
    bucket, prefix = aws_env.split_s3_uri(code["DataSource"]["S3DataSource"]["S3Uri"])
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")["Contents"]
    job_files = sorted(item["Key"][len(prefix) + 1 :] for item in listed)

    assert trial_files == job_files
    assert ".env" not in trial_files and not any("__pycache__" in f for f in trial_files)
    assert "train.py" in trial_files


def test_spot_trials_wait_for_capacity_and_keep_checkpoints_under_the_tuning_job(
    aws_call_recorder, tuning_config, tmp_path
):
    done = tune(
        "--dry-run",
        "--json",
        "--use-spot",
        "--max-run",
        "600",
        "--config",
        tuning_config,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    definition = request["TrainingJobDefinition"]
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 600,
        "MaxWaitTimeInSeconds": 1200,
    }
    name = request["HyperParameterTuningJobName"]
    assert definition["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/{name}/checkpoints/"
    on_demand = json.loads(
        tune("--dry-run", "--json", "--no-use-spot", "--config", tuning_config, cwd=tmp_path).stdout
    )
    assert "CheckpointConfig" not in on_demand["TrainingJobDefinition"]
    assert aws_call_recorder == []


def test_a_create_whose_answer_was_lost_and_retried_finds_the_job_it_made(
    aws, fake_tuner, tuning_config, tmp_path
):
    aws.client("s3").create_bucket(Bucket=BUCKET)
    fake_tuner.lose_first_answer = True
    out = tmp_path / "tune-results"

    done = tune("--config", tuning_config, "--out-dir", out, cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    first, retry = fake_tuner  # botocore asked again; SageMaker said the job exists: it is ours
    assert first == retry
    (folder,) = out.iterdir()
    assert json.loads((folder / "tuning.json").read_text())["trials"] == 3
