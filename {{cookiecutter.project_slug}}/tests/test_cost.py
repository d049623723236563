"""Prices from the AWS Price List API (a stand-in answering its recorded response), cached with
their date; the cost's upper bound before a launch, --max-cost, and the bill after."""

import json
import os

import botocore.session
import pytest
from aws_fakes import FIXTURES, PROJECT_ROOT, REGION, run_script
from botocore.stub import Stubber

from launcher import job_cost, job_options, project

RUN_JOB, TUNE = PROJECT_ROOT / "scripts" / "run_job.py", PROJECT_ROOT / "scripts" / "tune.py"
PRICES = PROJECT_ROOT / "scripts" / "prices.py"
MOTO_ACCOUNT = "123456789012"
US_EAST_1_TRAINING = {  # what tests/fixtures/pricing_get_products.json holds for training there
    "ml.g4dn.xlarge": 0.736,
    "ml.g5.xlarge": 1.408,
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.p3.2xlarge": 3.825,
}


def script(path, *options, env, cwd):
    return run_script([path, *options], env=env, cwd=cwd)


def test_the_recorded_price_list_answer_has_the_shape_of_botocores_pricing_model():
    client = botocore.session.get_session().create_client(
        "pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    recorded = json.loads((FIXTURES / "pricing_get_products.json").read_text())
    Stubber(client).add_response("get_products", recorded)  # raises on a shape it does not know


def test_refresh_reads_only_the_regions_on_demand_training_prices_and_keeps_their_date(
    aws_stand_ins, prices_cache, tmp_path, monkeypatch
):
    done = script(PRICES, "--refresh", "--region", "us-east-1", env=dict(os.environ), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    cached = json.loads(prices_cache.read_text())["us-east-1"]
    assert cached["usd_per_hour"] == US_EAST_1_TRAINING  # no Hosting, Notebook or eu-west-1
    assert cached["read"].startswith("20") and "Price List API" in cached["source"]
    assert "ml.g5.xlarge" in done.stdout and "$1.41" in done.stdout


def test_prices_without_a_cache_say_how_to_fill_it_and_call_nothing(
    aws_call_recorder, tmp_path, monkeypatch
):
    done = script(PRICES, env=dict(os.environ), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"no prices cached for {REGION}; {job_cost.REFRESH}"
    assert aws_call_recorder == []


def test_a_refresh_that_fails_says_why_in_one_line_and_keeps_the_cache(
    aws_call_recorder, prices_cache, tmp_path
):
    job_cost.write_cache(REGION, {"ml.m5.large": 0.115})
    before = prices_cache.read_text()

    done = script(PRICES, "--refresh", env=dict(os.environ), cwd=tmp_path)

    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("prices.py: error:") and line.endswith("the cache is unchanged")
    assert prices_cache.read_text() == before


def test_dry_run_without_prices_says_the_cost_is_unknown_and_why_without_an_aws_call(
    aws_call_recorder, tmp_path
):
    done = script(RUN_JOB, "--dry-run", env=dict(os.environ), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert f"cost: unknown (no prices cached for {REGION}: {job_cost.REFRESH})" in done.stderr
    assert aws_call_recorder == []


def test_dry_run_with_prices_gives_the_upper_bound_in_dollars(aws_call_recorder, tmp_path):
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})

    done = script(
        RUN_JOB,
        "--dry-run",
        "--json",
        "--no-use-spot",
        "--max-run",
        "1800",
        "--instance-count",
        "2",
        "--keep-alive",
        "600",
        env=dict(os.environ),
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    bound = (1800 + 600) / 3600 * 2 * 0.736  # $0.98
    assert f"cost: at most {job_cost.dollars(bound)} (2 x {project.INSTANCE_TYPE} at $0.74/h" in (
        done.stderr
    )
    assert "--keep-alive 600 s of warm pool" in done.stderr
    assert json.loads(done.stdout)["ResourceConfig"]["InstanceCount"] == 2
    assert aws_call_recorder == []


def test_spot_says_it_bills_less_than_the_bound(aws_call_recorder, tmp_path):
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})

    done = script(RUN_JOB, "--dry-run", "--use-spot", env=dict(os.environ), cwd=tmp_path)

    assert "spot bills less: --max-wait bounds the wait, not the bill" in done.stderr


@pytest.mark.parametrize("cached", [True, False], ids=["above the limit", "price unknown"])
def test_max_cost_refuses_a_launch_in_one_line_without_any_aws_call(
    aws_call_recorder, tmp_path, cached
):
    if cached:
        job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})
    out = tmp_path / "results"

    done = script(
        RUN_JOB, "--max-cost", "0.01", "--out-dir", out, env=dict(os.environ), cwd=tmp_path
    )

    assert done.returncode == 2
    (refusal,) = [line for line in done.stderr.splitlines() if line.startswith("run_job.py")]
    assert ("above --max-cost $0.01" if cached else "the cost is unknown") in refusal
    assert aws_call_recorder == [] and not out.exists()


def test_a_launch_within_max_cost_goes_ahead(aws_call_recorder, tmp_path):
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})

    done = script(RUN_JOB, "--dry-run", "--max-cost", "1", env=dict(os.environ), cwd=tmp_path)

    assert done.returncode == 0, done.stderr  # 3600 s at $0.736 is within $1


def test_the_last_completed_job_of_the_same_config_shows_what_it_cost(aws_call_recorder, tmp_path):
    out = tmp_path / "results"
    jobs = [("1", 0.05, "Completed"), ("2", 0.07, "Completed"), ("3", 0.5, "Failed")]
    for stamp, cost, status in jobs:
        (out / stamp).mkdir(parents=True)
        exp = {"job_name": f"job-{stamp}", "status": status, "config": "exp001", "ended": stamp}
        exp |= {"instance_type": project.INSTANCE_TYPE, "cost_usd": cost}
        (out / stamp / "exp.json").write_text(json.dumps(exp))

    done = script(RUN_JOB, "--dry-run", "--out-dir", out, env=dict(os.environ), cwd=tmp_path)

    assert "exp001: the last completed job cost $0.07 (job-2)" in done.stderr


def test_tuning_bounds_every_trial_it_may_start(aws_call_recorder, tmp_path):
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})

    done = script(TUNE, "--dry-run", "--max-run", "900", env=dict(os.environ), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    max_jobs = 8  # config/tune001.yaml
    total = job_cost.dollars(max_jobs * 900 / 3600 * 0.736)
    assert f"{max_jobs} jobs: at most {total} in total" in done.stderr
    refused = script(TUNE, "--dry-run", "--max-cost", "1", env=dict(os.environ), cwd=tmp_path)
    assert refused.returncode == 2 and "above --max-cost $1.00" in refused.stderr


def test_the_bill_counts_every_instance_and_the_warm_pool_and_spots_saving():
    job = {
        "mode": "sagemaker",
        "instance_count": 2,
        "billable_seconds": 900,
        "training_seconds": 1800,
        "spot": True,
        "warm_pool_billable_seconds": None,
    }
    assert job_cost.bill(job, 0.736) == {
        "price_usd_per_hour": 0.736,
        "cost_usd": pytest.approx(900 * 2 * 0.736 / 3600),
        "spot_saving": 0.5,
    }
    warm = {**job, "spot": False, "warm_pool_billable_seconds": 600}
    assert job_cost.bill(warm, 0.736)["cost_usd"] == pytest.approx(1500 * 2 * 0.736 / 3600)
    assert job_cost.bill({**job, "mode": "local"}, 0.736)["cost_usd"] is None
    assert job_cost.bill(job, None)["cost_usd"] is None


@pytest.mark.parametrize("region", ["cn-north-1", "us-gov-west-1"])
def test_max_cost_in_a_partition_without_listed_prices_says_why_and_calls_nothing(
    aws_call_recorder, tmp_path, region
):
    environment = dict(os.environ)
    options = ["--dry-run", "--region", region, "--max-cost", "1"]
    done = script(RUN_JOB, *options, env=environment, cwd=tmp_path)
    refresh = script(PRICES, "--refresh", "--region", region, env=environment, cwd=tmp_path)

    assert done.returncode == 2
    assert "lists no USD training prices for " + region in done.stderr.strip().splitlines()[-1]
    assert refresh.returncode == 1 and "partition" in refresh.stderr
    assert aws_call_recorder == []


def project_job(aws, name, status, billable_seconds, project_slug=project.PROJECT_SLUG):
    """A training job in moto, tagged as run_job.py tags them, with SageMaker's record of it."""
    from moto.sagemaker.models import sagemaker_backends

    aws.client("sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        RoleArn=f"arn:aws:iam::{project.AWS_ACCOUNT_ID}:role/Role",
        OutputDataConfig={"S3OutputPath": "s3://bucket/out"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        Tags=[{"Key": "project", "Value": project_slug}, {"Key": "user", "Value": "student1"}],
    )
    # moto serves these attributes as they are set; it keeps no billable time of its own.
    job = sagemaker_backends[MOTO_ACCOUNT][REGION].training_jobs[name]
    job.training_job_status, job.billable_time_in_seconds = status, billable_seconds


@pytest.fixture
def class_jobs(aws):
    """On ml.m5.xlarge ($0.23/h) x 2: a finished job that billed 30 min ($0.23), one running
    (at its one-hour bound: $0.46), and another project's job, which is not this one's spend."""
    job_cost.write_cache(REGION, US_EAST_1_TRAINING)
    project_job(aws, "done-1", "Completed", 1800)
    project_job(aws, "running-2", "InProgress", None)
    project_job(aws, "other-3", "Completed", 36000, project_slug="someone-else")
    return 0.23 + 0.46


def test_the_projects_spend_is_what_sagemaker_billed_its_tagged_jobs(aws, class_jobs):
    spent, unpriced = job_cost.project_spend(aws_session(), REGION)

    assert spent == pytest.approx(class_jobs) and unpriced == set()


def test_budget_refuses_a_launch_the_projects_spend_would_take_past_it(aws, class_jobs, tmp_path):
    options = ["--instance-type", "ml.m5.xlarge", "--max-run", "3600", "--no-use-spot"]
    before = aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]

    class_budget = {**os.environ, job_options.BUDGET_VARIABLE: "0.8"}  # as --budget 0.8
    done = script(RUN_JOB, *options, env=class_budget, cwd=tmp_path)

    assert done.returncode == 2, done.stdout + done.stderr
    refusal = done.stderr.strip().splitlines()[-1]
    assert "this project's jobs have cost $0.69 so far" in refusal
    assert "with at most $0.23 more that is above --budget $0.80; nothing was launched" in refusal
    assert aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == before


def test_within_budget_the_launch_goes_on_and_says_how_much_is_left(aws, class_jobs, capsys):
    from argparse import Namespace

    args = Namespace(budget=1.0, region=REGION)

    job_options.check_budget(args, aws_session(), 0.23)

    assert "budget: $0.69 spent of $1.00, at most $0.23 more" in capsys.readouterr().err


def aws_session():
    import boto3

    return boto3.Session(region_name=REGION)
