"""Rendering: the designed files, every option combination, clean and runnable output."""

import itertools
import json
import os
import py_compile
import re
import subprocess
import sys

import pytest
import yaml
from conftest import (
    CHOICES,
    TEMPLATE_DIR,
    TEMPLATE_SPEC,
    cookiecutter_cli,
    project_files,
    ruff,
    run_checked,
)

KEPT_FOLDERS = ["dataset", "rawdata", "result/model", "result/output"]

DEFAULT_FILES = {
    ".github/workflows/ci.yml",
    ".github/job-python-version",
    ".gitignore",
    "README.ja.md",
    "README.md",
    "config/exp001.yaml",
    "config/tune001.yaml",
    "docs/costs.md",
    "docs/costs.ja.md",
    "docs/data.md",
    "docs/data.ja.md",
    "docs/jobs.md",
    "docs/jobs.ja.md",
    "docs/kaggle.md",
    "docs/kaggle.ja.md",
    "docs/scale-out.md",
    "docs/scale-out.ja.md",
    "docs/tests.md",
    "docs/tests.ja.md",
    "docs/tracking.md",
    "docs/tracking.ja.md",
    "docs/training.md",
    "docs/training.ja.md",
    "docs/tuning.md",
    "docs/tuning.ja.md",
    "noxfile.py",
    "requirements-dev.txt",
    "requirements.txt",
    "ruff.toml",
    "launcher/__init__.py",
    "launcher/comparison.py",
    "launcher/aws_env.py",
    "launcher/cleanup.py",
    "launcher/job_checks.py",
    "launcher/job_config.py",
    "launcher/job_cost.py",
    "launcher/job_options.py",
    "launcher/job_progress.py",
    "launcher/job_request.py",
    "launcher/job_results.py",
    "launcher/jobs.py",
    "launcher/local_job.py",
    "launcher/project.py",
    "launcher/s3_sync.py",
    "launcher/submission.py",
    "launcher/synthetic.py",
    "launcher/tuning.py",
    "scripts/cleanup.py",
    "scripts/doctor.py",
    "scripts/predict.py",
    "scripts/prepare_dataset.py",
    "scripts/prices.py",
    "scripts/report.py",
    "scripts/run_job.py",
    "scripts/run_job.sh",
    "scripts/submit.py",
    "scripts/tune.py",
    "scripts/upload_dataset.py",
    "src/checkpoint.py",
    "src/container_entry.py",
    "src/cross_validation.py",
    "src/data.py",
    "src/distributed.py",
    "src/hardware.py",
    "src/metrics.py",
    "src/model.py",
    "src/options.py",
    "src/plots.py",
    "src/requirements.txt",
    "src/resumable.py",
    "src/saved_model.py",
    "src/splits.py",
    "src/tracking.py",
    "src/train.py",
    "src/train.sh",
    "src/watchdog.py",
    "tests/aws_fakes.py",
    "tests/conftest.py",
    "tests/fixtures/pricing_get_products.json",
    "tests/fixtures/service_quotas_list_sagemaker.json",
    "tests/test_aws_errors.py",
    "tests/test_capacity.py",
    "tests/test_cleanup.py",
    "tests/test_cost.py",
    "tests/test_cross_validation.py",
    "tests/test_data.py",
    "tests/test_doctor.py",
    "tests/test_distributed.py",
    "tests/test_hardware.py",
    "tests/test_hostile_configs.py",
    "tests/test_local_job.py",
    "tests/test_predict.py",
    "tests/test_progress.py",
    "tests/test_report.py",
    "tests/test_run_job.py",
    "tests/test_submit.py",
    "tests/test_sagemaker_container.py",
    "tests/test_tracking.py",
    "tests/test_train.py",
    "tests/test_triage.py",
    "tests/test_tune.py",
    "tests/test_upload.py",
    *(f"{folder}/.gitkeep" for folder in KEPT_FOLDERS),
}
TRACKING_FILES = {
    "src/tracking.py",
    "tests/test_tracking.py",
    "docs/tracking.md",
    "docs/tracking.ja.md",
}
CUSTOM_CONTAINER_FILES = {
    "docs/custom-container.md",
    "docs/custom-container.ja.md",
    "docker/Dockerfile",
    "scripts/build_and_push.sh",
    "tests/test_container.py",
}

OPTION_COMBINATIONS = [
    dict(zip(["experiment_tracking", "container", "use_spot_instances"], combination, strict=True))
    for combination in itertools.product(
        CHOICES["experiment_tracking"], CHOICES["container"], [False, True]
    )
]
for index, options in enumerate(OPTION_COMBINATIONS):  # every task, with several of them
    options["task"] = CHOICES["task"][index % len(CHOICES["task"])]
TEMPLATE_LEFTOVERS = ("{{", "{%", "cookiecutter.")


def combination_id(options):
    return "-".join(str(value) for value in options.values())


def text_files(project):
    for name in sorted(project_files(project)):
        if name.endswith(".gitkeep"):
            continue
        yield name, (project / name).read_text("utf-8")


def test_default_bake_renders_exactly_the_designed_files(bake):
    project = bake()
    assert project.name == "sagemaker-mnist"
    assert project_files(project) == DEFAULT_FILES


SCRIPT_MAX_LINES = 150  # scripts/ are thin entry points: parse, call launcher/, print
LOADS_BY_PATH = ("spec_from_file_location", "runpy", "importlib.util", "import_module(")


@pytest.mark.parametrize("task", CHOICES["task"])
def test_scripts_are_thin_and_nothing_loads_a_project_file_by_path(bake, task):
    project = bake(task=task, container="custom")
    for script in (project / "scripts").glob("*.py"):
        lines = script.read_text("utf-8").count("\n")
        assert lines <= SCRIPT_MAX_LINES, f"{script.name} has {lines} lines"
    code = [path for path in project.rglob("*.py") if "tests" not in path.parts]
    code += [project / "tests" / "conftest.py", project / "tests" / "aws_fakes.py"]
    for path in code:
        text = path.read_text("utf-8")
        for way in LOADS_BY_PATH:
            assert way not in text, f"{path.relative_to(project)} loads a module with {way}"
    definitions = [
        path.relative_to(project).as_posix()
        for path in code
        for _ in re.finditer(
            r"""(add_argument\(\s*|^\s*)["']--instance-type["']\s*[,:]""",
            path.read_text("utf-8"),
            re.M,
        )
    ]
    assert definitions == ["launcher/job_options.py"], definitions


def task_files(task):
    """The files of a task's own (its folder under tasks/), as they land in a render."""
    folder = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "tasks"
    folder /= TEMPLATE_SPEC["_task_files"][task]
    return folder, {path.relative_to(folder).as_posix() for path in folder.rglob("*.py")}


@pytest.mark.parametrize("task", CHOICES["task"])
def test_every_task_renders_the_shared_files_and_its_own_and_nothing_else(bake, task):
    project = bake(task=task)
    folder, own = task_files(task)
    shared = DEFAULT_FILES - task_files("mnist")[1]
    unpacks_archives = {"launcher/rawdata.py"} if task != "mnist" else set()
    assert project_files(project) == shared | own | unpacks_archives  # no tasks/ folder left
    sources = sorted(folder.rglob("*.py"))
    assert {"src/data.py", "scripts/prepare_dataset.py", "tests/test_data.py"} <= own
    for source in sources:
        rendered = project / source.relative_to(folder)
        assert rendered.read_text() == source.read_text(), rendered
    problem = "regression" if task == "regression" else "classification"
    assert f'PROBLEM = "{problem}"' in (project / "src" / "metrics.py").read_text()


def test_tracking_none_removes_mlflow_files_code_and_dependencies(bake):
    project = bake(experiment_tracking="none")
    assert project_files(project) == DEFAULT_FILES - TRACKING_FILES
    for name, text in text_files(project):
        if name.endswith((".py", ".txt", ".sh", ".yaml", ".yml")):
            assert "mlflow" not in text.lower(), name


def test_prebuilt_container_leaves_no_docker_folder(bake):
    project = bake(container="prebuilt")
    assert not (project / "docker").exists()


def test_custom_container_adds_exactly_the_docker_files(bake):
    project = bake(container="custom")
    assert project_files(project) == DEFAULT_FILES | CUSTOM_CONTAINER_FILES


@pytest.mark.parametrize("version", CHOICES["pytorch_version"])
@pytest.mark.parametrize("options", OPTION_COMBINATIONS, ids=combination_id)
def test_every_option_combination_renders_without_template_leftovers(bake, options, version):
    project = bake(pytorch_version=version, **options)
    for name, text in text_files(project):
        # GitHub Actions expressions (${{ ... }}) are the workflow's own syntax.
        text = text.replace("${{", "")
        for leftover in TEMPLATE_LEFTOVERS:
            assert leftover not in text, f"{name} still contains {leftover!r}"
        # Jinja line statements (cookiecutter.json _jinja2_env_vars) start with "#%".
        statements = [line for line in text.splitlines() if line.lstrip().startswith("#%")]
        assert statements == [], f"{name} still contains {statements}"


@pytest.mark.parametrize("options", OPTION_COMBINATIONS, ids=combination_id)
def test_rendered_code_compiles_and_passes_ruff(bake, options):
    project = bake(**options)
    for path in project.rglob("*.py"):
        py_compile.compile(str(path), doraise=True)
    lint = ruff("check", "--no-cache", ".", cwd=project)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatting = ruff("format", "--check", "--no-cache", ".", cwd=project)
    assert formatting.returncode == 0, formatting.stdout + formatting.stderr


@pytest.mark.parametrize("options", OPTION_COMBINATIONS, ids=combination_id)
def test_rendered_yaml_parses_and_shell_scripts_pass_bash_n(bake, options):
    project = bake(**options)
    for path in [*project.rglob("*.yaml"), *project.rglob("*.yml")]:
        # A mapping, or comments only (a config that keeps every default).
        assert isinstance(yaml.safe_load(path.read_text("utf-8")) or {}, dict), path
    scripts = list(project.rglob("*.sh"))
    assert scripts
    for path in scripts:
        check = run_checked("bash", "-n", path)
        assert check.returncode == 0, check.stderr


def test_post_gen_creates_kept_folders_and_git_ignores_only_their_contents(bake, tmp_path):
    project = bake()
    for folder in KEPT_FOLDERS:
        assert (project / folder / ".gitkeep").is_file()
    (project / "dataset/MNIST").mkdir()
    (project / "dataset/MNIST/data.bin").write_bytes(b"x")
    (project / "result/model/model.pt").write_bytes(b"x")
    (project / "result/checkpoints").mkdir()
    (project / "result/checkpoints/last.pt").write_bytes(b"x")
    (project / ".env").write_text("AWS_PROFILE=me\n")
    files = project_files(project)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=project, check=True, capture_output=True, text=True
    ).stdout.split()
    assert set(tracked) == files - {
        "dataset/MNIST/data.bin",
        "result/model/model.pt",
        "result/checkpoints/last.pt",
        ".env",
    }


def test_shell_scripts_and_entry_points_are_executable(bake):
    project = bake(container="custom")
    executables = [
        *project.rglob("*.sh"),
        *(project / "scripts").glob("*.py"),
        project / "src/train.py",
    ]
    for path in executables:
        assert os.access(path, os.X_OK), path


def test_rendered_values_land_where_they_are_used(bake):
    values = {
        "aws_account_id": "210987654321",
        "aws_region": "ap-northeast-1",
        "instance_type": "ml.g5.xlarge",
        "experiment_name": "kaggle-digits",
        "sagemaker_role": "MyTeamSageMakerRole",
        "use_spot_instances": True,
    }
    project = bake(**values)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.pop("SAGEMAKER_ROLE_ARN", None)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]])
    dry_run = subprocess.run(
        ["bash", "scripts/run_job.sh", "001", "--dry-run", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    request = json.loads(dry_run.stdout)
    assert request["TrainingJobName"].startswith("kaggle-digits-exp001-")
    assert request["RoleArn"] == "arn:aws:iam::210987654321:role/MyTeamSageMakerRole"
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert request["OutputDataConfig"]["S3OutputPath"].startswith(
        "s3://sagemaker-ap-northeast-1-210987654321/"
    )
    assert request["EnableManagedSpotTraining"] is True
    assert (
        ".ecr.ap-northeast-1.amazonaws.com/pytorch-training:"
        in (request["AlgorithmSpecification"]["TrainingImage"])
    )
    readme = (project / "README.md").read_text("utf-8")
    for value in values.values():
        assert str(value).lower() in readme.lower()


def test_pytorch_version_choices_all_have_a_training_image_in_the_sdk_table():
    from sagemaker.core import image_uris

    for version in CHOICES["pytorch_version"]:
        uri = image_uris.retrieve(
            framework="pytorch",
            region="us-east-1",
            version=version,
            instance_type="ml.g4dn.xlarge",
            image_scope="training",
        )
        # The image's Python (py313) is what the project's .github/job-python-version and CI say.
        python = TEMPLATE_SPEC["_image_python"][version]
        assert uri.endswith(f"pytorch-training:{version}-gpu-py{python.replace('.', '')}"), uri


@pytest.mark.parametrize("version", CHOICES["pytorch_version"])
def test_rendered_python_version_is_the_images(bake, version):
    project = bake(pytorch_version=version)
    python = TEMPLATE_SPEC["_image_python"][version]
    assert (project / ".github/job-python-version").read_text() == f"{python}\n"
    for readme in ("README.md", "README.ja.md"):
        assert f"Python {python}" in (project / readme).read_text("utf-8")


def test_command_line_render_then_replay_gives_the_same_project(tmp_path):
    home = tmp_path / "home"
    first = cookiecutter_cli(
        "--no-input", TEMPLATE_DIR, "-o", tmp_path / "first", "experiment_name=replayed"
    )
    assert first.returncode == 0, first.stderr
    assert "Next steps" in first.stdout
    replayed = cookiecutter_cli("--replay", TEMPLATE_DIR, "-o", tmp_path / "second")
    assert replayed.returncode == 0, replayed.stderr
    first_project = tmp_path / "first/sagemaker-mnist"
    second_project = tmp_path / "second/sagemaker-mnist"
    assert project_files(first_project) == project_files(second_project)
    for name in project_files(first_project):
        assert (first_project / name).read_bytes() == (second_project / name).read_bytes(), name
    assert home.is_dir()


def test_render_from_a_relative_template_path_validates_choices(tmp_path):
    rendered = cookiecutter_cli("--no-input", ".", "-o", tmp_path / "ok", cwd=TEMPLATE_DIR)
    assert rendered.returncode == 0, rendered.stderr
    refused = cookiecutter_cli(
        "--no-input", ".", "-o", tmp_path / "bad", "container=podman", cwd=TEMPLATE_DIR
    )
    assert refused.returncode != 0
    assert "container" in refused.stderr


def pins(path):
    """{package: {versions}} of a requirements file (one per Python marker)."""
    found = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            found.setdefault(name, set()).add(version)
    return found


def test_the_container_installs_light_packages_pinned_as_the_local_environment(bake):
    project = bake(experiment_tracking="mlflow")
    container = pins(project / "src" / "requirements.txt")
    local = pins(project / "requirements.txt")
    # The MLflow client only: full mlflow (its server, pandas, scipy, ...) took 83 s to install.
    assert "mlflow" not in container and container["mlflow-skinny"] == local["mlflow"]
    assert not {"torch", "torchvision"} & set(container)  # the image has matching builds
    assert "matplotlib" not in container  # a floor the image satisfies: a pin would reinstall it
    for name, versions in container.items():
        if name in local:
            assert versions <= local[name], name
