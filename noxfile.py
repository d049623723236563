"""Sessions for the template itself: `nox` runs lint, tests and smoke.

Every session runs in one shared virtualenv (.nox/shared). Torch alone is
several GB, so it is installed once and reused until a requirements file changes.
"""

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PROJECT_TEMPLATE = ROOT / "{{cookiecutter.project_slug}}"
SHARED_VENV = ROOT / ".nox" / "shared"
REQUIREMENTS = [
    ROOT / "requirements-dev.txt",
    PROJECT_TEMPLATE / "requirements.txt",
    PROJECT_TEMPLATE / "requirements-dev.txt",
]
# Smoke renders: the defaults, then every other choice of each option at least once.
SMOKE_RENDERS = {
    "defaults": [],
    "no-tracking-custom-container-images": [
        "experiment_tracking=none",
        "container=custom",
        "task=images",
    ],
    "tabular": ["task=tabular"],
    "regression": ["task=regression"],
}
# The defaults run their whole suite. The launcher, training machinery (resume, folds, torchrun,
# PID 1), the AWS side and the docs are the same files in every render and are proven there;
# another render runs the tests of what its choices change: the task's own data and model
# (tests/test_data.py trains, resumes and predicts with them end to end), prediction in its
# format, and a custom container's image and its ECR clean-up.
TASK_TESTS = ["tests/test_data.py", "tests/test_predict.py"]
CHOICE_TESTS = {
    "container=custom": ["tests/test_container.py", "tests/test_cleanup.py"],
}


def tests_of(overrides):
    """The pytest arguments of a smoke render's suite: everything for the defaults."""
    if not overrides:
        return []
    return TASK_TESTS + [test for choice in overrides for test in CHOICE_TESTS.get(choice, [])]


# The render whose requirements include every optional dependency.
SUPERSET_RENDER = ["experiment_tracking=mlflow", "container=custom"]

nox.options.sessions = ["lint", "tests", "smoke"]


def venv_bin(name):
    return str(SHARED_VENV / ("Scripts" if os.name == "nt" else "bin") / name)


def requirements_fingerprint():
    digest = hashlib.sha256()
    for path in REQUIREMENTS:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def render(session, output_dir, *overrides):
    """Render the template with --no-input into output_dir; return the project path."""
    session.run(
        venv_bin("cookiecutter"), "--no-input", str(ROOT), "-o", str(output_dir), *overrides
    )
    (project,) = Path(output_dir).iterdir()
    return project


def shared_env(session):
    """Create or refresh .nox/shared; return the env that puts it first on PATH."""
    stamp = SHARED_VENV / "requirements.sha256"
    fingerprint = requirements_fingerprint()
    if not stamp.is_file() or stamp.read_text() != fingerprint:
        session.log(f"Installing the shared environment into {SHARED_VENV} (once)")
        session.run(sys.executable, "-m", "venv", "--clear", str(SHARED_VENV))
        pip = [venv_bin("python"), "-m", "pip", "install", "--disable-pip-version-check"]
        session.run(*pip, "-r", str(ROOT / "requirements-dev.txt"))
        # The rendered requirements contain Jinja: render the superset to read them.
        with tempfile.TemporaryDirectory() as output_dir:
            project = render(session, output_dir, *SUPERSET_RENDER)
            session.run(*pip, "-r", str(project / "requirements-dev.txt"))
        stamp.write_text(fingerprint)
    return {
        "PATH": os.pathsep.join([str(Path(venv_bin("python")).parent), os.environ["PATH"]]),
        "VIRTUAL_ENV": str(SHARED_VENV),
    }


@nox.session(python=False)
def lint(session):
    """ruff on the template's own code and on each smoke render (every task's own files)."""
    env = shared_env(session)
    session.run(venv_bin("ruff"), "check", str(ROOT), env=env)
    session.run(venv_bin("ruff"), "format", "--check", str(ROOT), env=env)
    for overrides in SMOKE_RENDERS.values():
        with tempfile.TemporaryDirectory() as output_dir:
            project = render(session, output_dir, *overrides)
            # The context manager returns to ROOT before the temporary folder is deleted.
            with session.chdir(project):
                session.run(venv_bin("ruff"), "check", ".", env=env)
                session.run(venv_bin("ruff"), "format", "--check", ".", env=env)


@nox.session(python=False)
def tests(session):
    """The template's pytest suite (renders, validation, odd text, docs)."""
    env = shared_env(session)
    session.chdir(ROOT)
    session.run(venv_bin("python"), "-m", "pytest", "-n", "auto", *session.posargs, env=env)


@nox.session(python=False)
def smoke(session):
    """Render the defaults and the other choices, then run each project's tests (TASK_TESTS
    outside the defaults) and smoke."""
    env = shared_env(session)
    for name in session.posargs or SMOKE_RENDERS:
        session.log(f"Smoke render: {name}")
        with tempfile.TemporaryDirectory() as output_dir:
            project = render(session, output_dir, *SMOKE_RENDERS[name])
            with session.chdir(project):
                tests = tests_of(SMOKE_RENDERS[name])
                session.run(
                    *(venv_bin("python"), "-m", "nox", "-s", "tests", "smoke", "--", *tests),
                    env=env,
                )


@nox.session(python=False, default=False)
def bench(session):
    """Benchmarks (minutes): render, smoke, one epoch vs the PyTorch MNIST example, dry run."""
    env = shared_env(session)
    session.run(venv_bin("python"), str(ROOT / "benchmarks" / "run.py"), *session.posargs, env=env)
