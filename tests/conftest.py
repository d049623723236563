"""Shared helpers for rendering the template in tests."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
TEMPLATE_SPEC = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text("utf-8"))
CHOICES = {
    key: value
    for key, value in TEMPLATE_SPEC.items()
    if isinstance(value, list) and not key.startswith("_")
}


def default_values(**overrides):
    """Every prompted variable with its default as --no-input renders it (a choice's first, a
    default made of others' values filled in), then the overrides."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(str(TEMPLATE_DIR / "cookiecutter.json"))
    rendered = prompt_for_config(context, no_input=True)
    values = {key: value for key, value in rendered.items() if not key.startswith("_")}
    values.update(overrides)
    return values


def render_from_replay(output_dir, **values):
    """Render exactly these values, the way `cookiecutter --replay-file` does.

    Replayed values reach the files as typed: cookiecutter does not run them
    through Jinja first (as it does with --no-input key=value overrides).
    """
    replay_file = Path(output_dir) / "replay" / "answers.json"
    replay_file.parent.mkdir(parents=True, exist_ok=True)
    replay_file.write_text(json.dumps({"cookiecutter": default_values(**values)}), "utf-8")
    project = cookiecutter(
        str(TEMPLATE_DIR),
        replay=str(replay_file),
        output_dir=str(Path(output_dir) / "out"),
        default_config=True,
    )
    return Path(project)


def render_no_input(output_dir, **extra_context):
    """cookiecutter --no-input with overrides, in this process (hooks still run as scripts)."""
    return cookiecutter(
        str(TEMPLATE_DIR),
        no_input=True,
        extra_context=extra_context,
        output_dir=str(output_dir),
        default_config=True,
    )


def cookiecutter_cli(*arguments, cwd=None):
    """The cookiecutter command line, as a user runs it."""
    return run_checked(sys.executable, "-m", "cookiecutter", *arguments, cwd=cwd)


def project_files(project):
    """Relative paths of every file in a rendered project."""
    return {
        path.relative_to(project).as_posix() for path in Path(project).rglob("*") if path.is_file()
    }


def leftovers(output_dir):
    """What a failed render left in its output directory (should be nothing)."""
    output_dir = Path(output_dir)
    return sorted(path.name for path in output_dir.iterdir()) if output_dir.exists() else []


def run_checked(*command, cwd=None):
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )


def ruff(*arguments, cwd):
    return run_checked(sys.executable, "-m", "ruff", *arguments, cwd=cwd)


@pytest.fixture
def bake(cookies):
    """Render with overrides and fail loudly if cookiecutter did not succeed."""

    def _bake(**extra_context):
        result = cookies.bake(extra_context=extra_context)
        assert result.exit_code == 0, result.exception
        assert result.exception is None
        return Path(result.project_path)

    return _bake


@pytest.fixture(autouse=True)
def _isolated_home(monkeypatch, tmp_path):
    # Keep the user's ~/.cookiecutterrc and replay directory out of the tests.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COOKIECUTTER_CONFIG", raising=False)
