"""AWS set-up mistakes a class makes (a profile that is not there, no credentials, expired ones):
each script says so in one line with the fix and exits 1, never with a traceback; --dry-run and
--local need no AWS at all."""

import http.server
import os
import threading

import pytest
from aws_fakes import PROJECT_ROOT, run_script
from botocore import exceptions

import options
from launcher import aws_env

SCRIPTS = PROJECT_ROOT / "scripts"
# Every script command that talks to AWS, with what it needs to get that far.
AWS_COMMANDS = [
    ["run_job.py"],
    ["run_job.py", "--fetch", "exp001-20261206000000"],
    ["tune.py"],
    ["doctor.py"],
    ["prices.py", "--refresh"],
    ["upload_dataset.py", "--upload-dir", "{dataset}"],
]


@pytest.fixture
def missing_profile(aws_credentials, monkeypatch):
    """AWS_PROFILE names a profile the (empty) AWS config files do not have."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_PROFILE", "workshop")


def run(command, synthetic_dataset, cwd):
    argv = [str(part).format(dataset=synthetic_dataset) for part in command]
    return run_script([SCRIPTS / argv[0], *argv[1:]], env=dict(os.environ), cwd=cwd)


def error_lines(done):
    return [line for line in done.stderr.splitlines() if not line.startswith("cost: ")]


@pytest.mark.parametrize("command", AWS_COMMANDS, ids=" ".join)
def test_a_missing_profile_is_one_line_naming_it_and_the_fix(
    command, missing_profile, synthetic_dataset, tmp_path
):
    done = run(command, synthetic_dataset, tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = error_lines(done)
    assert line.startswith(f"{command[0]}: error: the AWS profile 'workshop' (AWS_PROFILE)")
    assert "aws configure list-profiles" in line and "unset AWS_PROFILE" in line


@pytest.mark.parametrize(
    "command", [["run_job.py", "--dry-run", "--json"], ["tune.py", "--dry-run", "--json"]]
)
def test_a_dry_run_needs_no_profile(command, missing_profile, synthetic_dataset, tmp_path):
    done = run(command, synthetic_dataset, tmp_path)

    assert done.returncode == 0, done.stderr
    assert "TrainingJobName" in done.stdout or "HyperParameterTuningJobName" in done.stdout


def test_a_local_run_needs_no_profile(missing_profile, synthetic_dataset, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("epochs: 1\n" + ("tracking: false\n" if options.HAS_TRACKING else ""))
    command = ["run_job.py", "--local", "--config", config, "--dataset-uri", synthetic_dataset]

    done = run([*command, "--out-dir", tmp_path / "out"], synthetic_dataset, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Completed" in done.stdout


def test_a_launch_without_credentials_stops_before_anything_in_one_line(
    aws_credentials, monkeypatch, tmp_path
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to find either
    out = tmp_path / "out"

    done = run(["run_job.py", "--out-dir", out], tmp_path, tmp_path)

    assert done.returncode != 0
    (line,) = error_lines(done)
    assert line.startswith("run_job.py: error: no AWS credentials found: set up credentials")
    assert line.endswith("nothing was launched")
    assert not out.exists()  # no result folder for a job that never was


@pytest.fixture
def expired_credentials(aws_credentials, monkeypatch):
    """An endpoint answering every call as AWS does once temporary credentials have expired
    (the Query protocol's error document, as STS sends it)."""

    class Expired(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = (
                b"<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>"
                b"<Message>The security token included in the request is expired</Message>"
                b"</Error><RequestId>1</RequestId></ErrorResponse>"
            )
            self.send_response(400)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Expired)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()


def test_expired_credentials_say_to_sign_in_again(expired_credentials, tmp_path):
    done = run(["run_job.py", "--out-dir", tmp_path / "out"], tmp_path, tmp_path)

    assert done.returncode != 0
    (line,) = error_lines(done)
    assert "the AWS credentials have expired: run `aws sso login`" in line


@pytest.mark.parametrize(
    "error, expected",
    [
        (exceptions.NoRegionError(), "no AWS region: pass --region or set AWS_REGION"),
        (exceptions.UnauthorizedSSOTokenError(), "run `aws sso login --profile class`"),
        (exceptions.SSOTokenLoadError(error_msg="no token"), "run `aws sso login --profile class`"),
        (
            exceptions.EndpointConnectionError(endpoint_url="https://sts.amazonaws.com"),
            "cannot reach AWS",
        ),
        (
            exceptions.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
            "incomplete or unreadable",
        ),
        (
            exceptions.ClientError(
                {"Error": {"Code": "InvalidClientTokenId", "Message": "bad"}}, "GetCallerIdentity"
            ),
            "AWS does not accept these credentials (InvalidClientTokenId)",
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_each_setup_error_is_one_line_with_its_fix(error, expected, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "class")

    message = aws_env.error_message(error)

    assert expected in message and "\n" not in message
    assert aws_env.is_aws_error(error)
