"""Pytest fixtures that stand in for AWS: moto's server, and SageMaker played on top of it.

moto accepts CreateTrainingJob but completes the job at once without running anything, so
`fake_sagemaker` plays the service: the created job runs through launcher/local_job.py (the
--local contract, on the channels downloaded from moto's S3), then model.tar.gz and
output.tar.gz go to S3 and the log lines to CloudWatch Logs, where SageMaker puts them.

tests/conftest.py loads this module as a plugin (after putting the project on sys.path). No network:
every client talks to the local server, credentials are dummies and the SDK's telemetry is off.
"""

import contextlib
import functools
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import boto3
import pytest

from launcher import aws_env, job_results, local_job, project

PROJECT_ROOT = Path(__file__).resolve().parent.parent

REGION = project.AWS_REGION


def run_script(command, env, cwd, timeout=300):
    """Run a project script as a user would (argv list; .sh through bash, .py through Python).

    Shell scripts find `python` on PATH, as in an activated virtual environment.
    """
    program = ["bash"] if str(command[0]).endswith(".sh") else [sys.executable]
    if program == ["bash"]:
        env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    return subprocess.run(
        [*program, *map(str, command)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The caller's own settings for these must not reach the code under test.
CALLER_VARIABLE_PREFIXES = (
    "AWS_",
    "SAGEMAKER_",
    #% if cookiecutter.experiment_tracking == "mlflow"
    "MLFLOW_",
    #% endif
)


@pytest.fixture
def aws_credentials(monkeypatch, tmp_path_factory):
    """Dummy credentials, no profile or config file of the machine, SDK telemetry off."""
    for name in list(os.environ):
        if name.startswith(CALLER_VARIABLE_PREFIXES):
            monkeypatch.delenv(name)
    config = tmp_path_factory.mktemp("sagemaker-config") / "config.yaml"
    # The SDK has no environment switch for telemetry, only this config key.
    config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
        "      TelemetryOptOut: true\n"
    )
    settings = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(config),
        "SAGEMAKER_VALIDATE_ROLE": "false",  # moto's IAM knows no role to validate
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Aws:
    """Clients of the moto server, and the environment that points scripts at it.

    pass_role: what IAM's SimulatePrincipalPolicy answers for iam:PassRole (moto lacks it).
    """

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.pass_role = "allowed"

    def client(self, service):
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)


SAGEMAKER_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@pytest.fixture
def aws(moto_endpoint, aws_credentials, monkeypatch):
    """moto, reset, holding what a set-up account has: the execution role, trusting SageMaker."""
    import urllib.request

    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    fake = Aws(moto_endpoint)
    fake.client("iam").create_role(
        RoleName=project.SAGEMAKER_ROLE.rsplit("/", 1)[-1],
        AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST),
    )

    def simulate_principal_policy(self):  # SimulatePrincipalPolicy's answer, one action
        resources = self._get_param("ResourceArns", [])
        result = {"EvalActionName": "iam:PassRole", "EvalDecision": fake.pass_role}
        result["EvalResourceName"] = resources[0]
        return ActionResult({"EvaluationResults": [result], "IsTruncated": False})

    monkeypatch.setattr(
        IamResponse, "simulate_principal_policy", simulate_principal_policy, raising=False
    )
    return fake


@pytest.fixture
def aws_call_recorder(aws_credentials, monkeypatch):
    """An endpoint that records every AWS request sent to it (and fails them all)."""
    calls = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_anything(self):
            length = int(self.headers.get("Content-Length") or 0)
            target = self.headers.get("X-Amz-Target") or self.path
            calls.append(f"{self.command} {target} {self.rfile.read(length)[:200]!r}")
            self.send_response(500)
            self.end_headers()

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_anything

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield calls
    server.shutdown()


FIXTURES = Path(__file__).resolve().parent / "fixtures"


class JsonApiStandIn(http.server.BaseHTTPRequestHandler):
    """Answers AWS JSON 1.1 calls (the X-Amz-Target header names the operation) that moto does
    not serve, from the answers in `handlers`: target -> function(request body) -> response."""

    handlers = {}

    def do_POST(self):
        target = self.headers.get("X-Amz-Target", "")
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        handler = self.handlers.get(target)
        status, answer = (200, handler(body)) if handler else (400, {"__type": "UnknownOperation"})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def recorded_products(request):
    """GetProducts over tests/fixtures/pricing_get_products.json: a response in the shape of
    botocore's pricing model (a test checks it) and of the AWS CLI's documented example, holding
    on-demand SageMaker prices of a few instance types (us-east-1 training prices as AWS's
    pricing page lists them, one Hosting and one Notebook product, one eu-west-1 product). The
    request's TERM_MATCH filters apply to the product's attributes and its productFamily."""
    recorded = json.loads((FIXTURES / "pricing_get_products.json").read_text())

    def matches(item):
        product = json.loads(item)["product"]
        fields = {**product["attributes"], "productFamily": product["productFamily"]}
        return all(fields.get(f["Field"]) == f["Value"] for f in request.get("Filters", []))

    served = request.get("ServiceCode") == "AmazonSageMaker"
    return {**recorded, "PriceList": [i for i in recorded["PriceList"] if served and matches(i)]}


class RecordedQuotas:
    """ListServiceQuotas over tests/fixtures/service_quotas_list_sagemaker.json, in the shape of
    botocore's service-quotas model (a test checks it): SageMaker's training quotas of two
    instance types (on-demand 1, spot 0, warm pool 0, as a new account has them; the quota codes
    are placeholders). `values` (quota name -> value) changes what it answers; a name in
    `defaults_only` is listed by ListAWSDefaultServiceQuotas alone, as a quota never changed is."""

    def __init__(self):
        self.recorded = json.loads((FIXTURES / "service_quotas_list_sagemaker.json").read_text())
        self.values = {quota["QuotaName"]: quota["Value"] for quota in self.recorded["Quotas"]}
        self.defaults_only = set()

    def answer(self, request, applied):
        quotas = [
            {**quota, "Value": self.values[quota["QuotaName"]]}
            for quota in self.recorded["Quotas"]
            if quota["ServiceCode"] == request.get("ServiceCode")
            and (quota["QuotaName"] not in self.defaults_only or not applied)
        ]
        return {"Quotas": quotas}


@pytest.fixture
def aws_stand_ins(aws_credentials, monkeypatch):
    """What moto lacks, on a local endpoint: the Price List API (pricing) and Service Quotas'
    SageMaker quotas, answered from recorded responses. Yields the quotas (RecordedQuotas)."""
    quotas = RecordedQuotas()
    handler = type("Handler", (JsonApiStandIn,), {"handlers": {}})
    handler.handlers["AWSPriceListService.GetProducts"] = recorded_products
    target = "ServiceQuotasV20190624."
    handler.handlers[target + "ListServiceQuotas"] = functools.partial(quotas.answer, applied=True)
    handler.handlers[target + "ListAWSDefaultServiceQuotas"] = functools.partial(
        quotas.answer, applied=False
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", endpoint)
    yield quotas
    server.shutdown()


@pytest.fixture(autouse=True)
def prices_cache(tmp_path, monkeypatch):
    """A price cache of the test's own (empty), never the project's result/prices.json."""
    from launcher import job_cost

    path = tmp_path / "prices-cache" / "prices.json"
    monkeypatch.setenv("PRICES_CACHE", str(path))
    monkeypatch.setattr(job_cost, "PRICES_FILE", path)
    return path


@pytest.fixture
def uploaded_dataset(aws, synthetic_dataset):
    """The tiny dataset where upload_dataset.py puts it: the default dataset URI."""
    bucket = aws_env.default_bucket(REGION)
    aws.client("s3").create_bucket(Bucket=bucket)
    upload_folder(aws.client("s3"), synthetic_dataset, aws_env.dataset_uri(bucket))
    return aws_env.dataset_uri(bucket)


def upload_folder(s3, folder, uri):
    bucket, prefix = aws_env.split_s3_uri(uri)
    for path in Path(folder).rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


# A name longer than any file system allows (255 bytes) cannot be written, wherever it points.
LONG_NAME = "n" * 300
HOSTILE_MEMBERS = ["../escaped.txt", "passwd-link", LONG_NAME, "model.pt"]
HOSTILE_MEMBERS += ["../../deeper-escape.txt"]


def hostile_archive():
    """A model.tar.gz with a model.pt, and members that point outside where it is extracted."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in HOSTILE_MEMBERS:
            member = tarfile.TarInfo(name)
            if name == "passwd-link":
                member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(member)
            else:
                member.size = 5
                tar.addfile(member, io.BytesIO(b"owned"))
    return buffer.getvalue()


class FakeSageMaker:
    """What SageMaker does with a created job, for the moto server (see the module doc).

    behaviour: "run" (train for real), "reject" (CreateTrainingJob fails with a
    ValidationException), "over quota" (it fails with ResourceLimitExceeded), "hang" (stays
    InProgress until released), "hostile" (completes with a model.tar.gz that points outside its
    folder).

    A running job's /opt/ml/checkpoints starts from its CheckpointConfig prefix and goes back
    there at the end (SageMaker also syncs while it runs). StopTrainingJob (which moto lacks)
    stops it with SIGTERM to its first process. pause_at: a log line's start; once a job prints
    it, its train.py processes are paused (SIGSTOP) and `paused` is set, until a stop has been
    passed on to them: a test's stop then lands there, however slow the machine.
    """

    def __init__(self, aws):
        self.aws = aws
        self.behaviour = "run"
        self.requests = []
        self.threads = []
        self.release = threading.Event()
        self.stops = {}  # job name -> threading.Event
        self.pause_at, self.paused, self.held = None, threading.Event(), []
        # Instance types with capacity now: of a job's instance preferences, the first of these
        # is selected (SelectedInstanceType); None: every type has capacity.
        self.capacity = None

    def on_create(self, backend, request):
        self.requests.append(request)
        job = backend.training_jobs[request["TrainingJobName"]]
        preferences = request["ResourceConfig"].get("InstancePreferences")
        if preferences:  # SageMaker selects the first type that has capacity
            selected = next(
                choice["InstanceType"]
                for choice in preferences
                if self.capacity is None or choice["InstanceType"] in self.capacity
            )
            count = request["ResourceConfig"]["InstanceCount"]
            job.resource_config.update(SelectedInstanceType=selected, SelectedInstanceCount=count)
            request = {**request, "ResourceConfig": {**request["ResourceConfig"]}}
            request["ResourceConfig"]["InstanceType"] = selected  # what the container is told
        job.training_job_status = "InProgress"
        job.training_start_time = job.training_end_time = None
        job.secondary_status_transitions = []
        self.transition(job, "Starting", "Preparing the instances for training")
        # moto replaces the metric definitions with its own; SageMaker keeps the request's.
        job.algorithm_specification["MetricDefinitions"] = request["AlgorithmSpecification"].get(
            "MetricDefinitions", []
        )
        thread = threading.Thread(target=self.play, args=(job, request), daemon=True)
        thread.start()
        self.threads.append(thread)

    def play(self, job, request):
        try:
            self.run_job(job, request)
        except Exception as error:  # a broken fake must show up as a failed job, not a hang
            job.training_job_status, job.failure_reason = "Failed", f"fake SageMaker: {error!r}"

    @staticmethod
    def transition(job, status, message):
        """A secondary status as DescribeTrainingJob's SecondaryStatusTransitions lists them
        (botocore's SecondaryStatusTransition: Status, StartTime, EndTime, StatusMessage)."""
        from moto.core.utils import utcnow

        now = utcnow()
        if job.secondary_status_transitions:
            job.secondary_status_transitions[-1]["EndTime"] = now
        if status in job_results.TERMINAL_STATUSES:
            job.training_end_time = now
        job.secondary_status_transitions.append(
            {"Status": status, "StartTime": now, "StatusMessage": message}
        )
        job.secondary_status = status

    def log_streamer(self, job_name):
        """echo for a running job: its lines reach CloudWatch Logs as it prints them, in
        batches a fraction of a second apart, as the container's log agent sends them (also
        while train.py is paused). close() sends the rest."""
        logs = self.aws.client("logs")
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=job_results.LOG_GROUP)
        stream = f"{job_name}/{local_job.HOST}-{int(time.time())}"
        logs.create_log_stream(logGroupName=job_results.LOG_GROUP, logStreamName=stream)
        pending, lock, closed = [], threading.Lock(), threading.Event()

        def flush():
            with lock:  # one batch at a time: the stream keeps the lines' order
                if pending:
                    logs.put_log_events(
                        logGroupName=job_results.LOG_GROUP,
                        logStreamName=stream,
                        logEvents=list(pending),
                    )
                    pending.clear()

        def keep_flushing():
            while not closed.wait(0.3):
                flush()

        def echo(line):
            with lock:
                pending.append({"timestamp": int(time.time() * 1000), "message": line or " "})
            self.watch(line)

        def close():
            closed.set()
            flush()

        threading.Thread(target=keep_flushing, daemon=True).start()
        echo.close = close
        return echo

    def run_job(self, job, request):
        if self.behaviour == "hang":  # until released: then abandoned, or run if told to
            self.release.wait(timeout=120)
            if self.behaviour == "hang":
                return
        output_path = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        output = f"{output_path}/{job.training_job_name}/output"
        s3 = self.aws.client("s3")
        job.training_start_time = job.creation_time
        self.transition(job, "Downloading", "Downloading input data")
        echo = None
        with tempfile.TemporaryDirectory(prefix="fake-sagemaker-") as workdir:
            if self.behaviour == "hostile":
                run = local_job.ContainerRun(
                    "Completed",
                    0,
                    None,
                    time.time(),
                    time.time(),
                    [
                        (
                            int(time.time() * 1000),
                            "epoch=1 train_loss=0.1 val_loss=0.1 val_accuracy=0.9",
                        )
                    ],
                )
                bucket, key = aws_env.split_s3_uri(f"{output}/model.tar.gz")
                s3.put_object(Bucket=bucket, Key=key, Body=hostile_archive())
            else:
                channel_dirs = {}
                for channel in request["InputDataConfig"]:
                    name = channel["ChannelName"]
                    target = Path(workdir, "channels", name)
                    aws_env.download_prefix(
                        s3, channel["DataSource"]["S3DataSource"]["S3Uri"], target
                    )
                    channel_dirs[name] = target
                checkpoints = Path(workdir, "checkpoints")
                prefix = request.get("CheckpointConfig", {}).get("S3Uri")
                checkpoints.mkdir()
                if prefix:
                    with contextlib.suppress(FileNotFoundError):  # a config's first job
                        aws_env.download_prefix(s3, prefix, checkpoints)
                self.transition(job, "Training", "Training image download completed.")
                echo = self.log_streamer(job.training_job_name)
                run = local_job.run_container(
                    request,
                    channel_dirs,
                    Path(workdir, "container"),
                    echo=echo,
                    checkpoints=checkpoints if prefix else None,
                    stop=self.stops.setdefault(job.training_job_name, threading.Event()),
                )
                echo.close()
                self.transition(job, "Uploading", "Uploading generated training model")
                if prefix:
                    self.sync_checkpoints(s3, checkpoints, prefix)
                for archive in [run.model_tar, run.output_tar]:
                    bucket, key = aws_env.split_s3_uri(f"{output}/{archive.name}")
                    s3.upload_file(str(archive), bucket, key)
        if echo is None:  # the log lines of a job that never ran
            self.write_logs(job.training_job_name, run)
        # What SageMaker reports when the container ends (moto serves these attributes as is).
        description = local_job.description(request, run)
        job.final_metric_data_list = [
            {**metric, "Timestamp": run.end} for metric in description["FinalMetricDataList"]
        ]
        job.training_time_in_seconds = max(2, description["TrainingTimeInSeconds"])
        # Spot bills fewer seconds than it trains (SageMaker's saving is 1 - billable/training);
        # this stand-in bills half.
        spot = request.get("EnableManagedSpotTraining")
        job.billable_time_in_seconds = job.training_time_in_seconds // (2 if spot else 1)
        job.failure_reason = description["FailureReason"]
        self.transition(job, description["TrainingJobStatus"], "Training job ended")
        job.training_job_status = description["TrainingJobStatus"]

    def watch(self, line):
        import container_entry

        if self.pause_at and line.startswith(self.pause_at) and not self.paused.is_set():
            self.held = container_entry.training_processes(os.getpid(), "train.py")
            for pid in self.held:
                os.kill(pid, signal.SIGSTOP)
            self.paused.set()
        if line.startswith("container_entry: SIGTERM passed on"):
            for pid in self.held:
                container_entry.send(pid, signal.SIGCONT)

    def stop(self, job_name):
        """StopTrainingJob: the job stops as SageMaker stops it."""
        self.stops.setdefault(job_name, threading.Event()).set()

    @staticmethod
    def sync_checkpoints(s3, folder, prefix):
        """The prefix as SageMaker leaves it: the folder's files, and no others."""
        bucket, key = aws_env.split_s3_uri(prefix)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/")
        for item in listed.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        upload_folder(s3, folder, prefix)

    def write_logs(self, job_name, run):
        logs = self.aws.client("logs")
        try:
            logs.create_log_group(logGroupName=job_results.LOG_GROUP)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        stream = f"{job_name}/{local_job.HOST}-{int(run.start)}"
        logs.create_log_stream(logGroupName=job_results.LOG_GROUP, logStreamName=stream)
        events = [{"timestamp": ms, "message": line or " "} for ms, line in run.log_events]
        if events:
            logs.put_log_events(
                logGroupName=job_results.LOG_GROUP, logStreamName=stream, logEvents=events
            )


@pytest.fixture
def fake_sagemaker(aws, monkeypatch):
    from moto.sagemaker.exceptions import SagemakerClientError, ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    fake = FakeSageMaker(aws)
    create = SageMakerResponse.create_training_job

    class ResourceLimitExceeded(SagemakerClientError):
        code = "ResourceLimitExceeded"  # one of CreateTrainingJob's errors in botocore's model

    def create_and_play(self):
        request = json.loads(self.body)
        if fake.behaviour == "reject":
            raise ValidationError("The requested resource ml.g4dn.xlarge is not available")
        if fake.behaviour == "over quota":  # SageMaker's wording
            quota = f"{request['ResourceConfig']['InstanceType']} for training job usage"
            raise ResourceLimitExceeded(
                f"The account-level service limit '{quota}' is 0 Instances, with current "
                "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS "
                "Service Quotas to request an increase for this quota."
            )
        result = create(self)
        fake.on_create(self.sagemaker_backend, request)
        return result

    def stop_training_job(self):
        name = json.loads(self.body)["TrainingJobName"]
        job = self.sagemaker_backend.training_jobs[name]
        job.secondary_status = "Stopping"
        fake.stop(name)
        return "{}"  # StopTrainingJob's output has no members (botocore's model)

    monkeypatch.setattr(SageMakerResponse, "create_training_job", create_and_play)
    monkeypatch.setattr(SageMakerResponse, "stop_training_job", stop_training_job, raising=False)
    yield fake
    fake.release.set()
    for thread in fake.threads:
        thread.join(timeout=60)
