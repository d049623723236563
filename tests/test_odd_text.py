"""Odd but valid free text renders safely; text that looks like code never runs."""

import json
import re
import subprocess
import sys

import pytest
import yaml
from conftest import TEMPLATE_DIR, render_from_replay, ruff, run_checked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ODD_TEXTS = [
    "O'Brien's \"quoted\" `backticked` project",
    "'''triple single''' and \"\"\"triple double\"\"\"",
    "C:\\new\\table\\ and a trailing backslash \\",
    "日本語のプロジェクト — ünïcödé ✓ 🚀",
    "{ cookiecutter.project_slug } { if true % } jinja-ish {endif} { # comment # }",
    "${HOME} $(touch PWNED) `touch PWNED`",
    '__import__("os").system("touch PWNED")',
    '"; import os; os.system("touch PWNED"); x = "',
    "# heading | table | <script>alert(1)</script> *bold* [link](http://x)",
    "key: value # yaml-looking - [list] {map: 1} &anchor *alias !tag",
    "x" * 200,
]
TEMPLATE_SYNTAX = re.compile(r"\{[{%#]|[}%#]\}")  # what the pre-gen hook refuses in free text


def rendered_defaults(project):
    """launcher/project.py as the rendered project's own Python sees it."""
    result = run_checked(
        sys.executable,
        "-c",
        "import json; from launcher import project; print(json.dumps(project.PROJECT_NAME))",
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_renders_safely(project, text, workdir):
    assert rendered_defaults(project) == text
    readme = (project / "README.md").read_text("utf-8")
    assert text in readme
    for path in [*project.rglob("*.yaml"), *project.rglob("*.yml")]:
        yaml.safe_load(path.read_text("utf-8"))
    for path in project.rglob("*.py"):
        compile(path.read_text("utf-8"), str(path), "exec")
    assert not list(workdir.rglob("PWNED")), "a value was executed"


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_odd_text_in_every_free_field_renders_into_valid_files(text, tmp_path):
    project = render_from_replay(tmp_path, project_name=text, author_name=text, description=text)
    assert_renders_safely(project, text, tmp_path)
    assert text in (project / "README.md").read_text("utf-8").split("Author: ", 1)[1]
    lint = ruff("check", "--no-cache", ".", cwd=project)
    assert lint.returncode == 0, lint.stdout
    formatting = ruff("format", "--check", "--no-cache", ".", cwd=project)
    assert formatting.returncode == 0, formatting.stdout


def test_hooks_never_execute_a_value_that_looks_like_python(tmp_path):
    marker = tmp_path / "PWNED-by-hook"
    payload = f'"""+__import__(\'pathlib\').Path({str(marker)!r}).touch()+"""'
    project = render_from_replay(tmp_path, project_name=payload, description=payload)
    assert not marker.exists()
    assert rendered_defaults(project) == payload


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    text=st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"),
        min_size=1,
        max_size=120,
    ).filter(lambda text: not TEMPLATE_SYNTAX.search(text))
)
def test_any_single_line_text_round_trips_into_python_and_markdown(text, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hypothesis")
    project = render_from_replay(workdir, project_name=text, author_name=text, description=text)
    assert_renders_safely(project, text, workdir)


def test_template_syntax_typed_at_the_prompt_is_refused_by_the_hook(tmp_path):
    """Cookiecutter passes typed answers on unrendered; cruft would render them on every update,
    so the hook refuses what it sees of template syntax, in one line, leaving nothing."""
    # The task first (its default), then the name the test is about, then the folder.
    answers = "\n".join(["", "{{ 7 * 7 }} lab", "lab", "", "", "", "", "", "", "", "", "", "", ""])
    result = subprocess.run(
        [sys.executable, "-m", "cookiecutter", str(TEMPLATE_DIR)],
        input=answers + "\n",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (error,) = [line for line in result.stdout.splitlines() if "ERROR: project_name=" in line]
    assert error.endswith(
        'ERROR: project_name="{{ 7 * 7 }} lab" is invalid: expected non-empty single-line text '
        "(at most 200 characters; no template syntax: brace-brace, brace-percent, brace-hash)."
    )
    assert not (tmp_path / "lab").exists()  # no project folder left behind
