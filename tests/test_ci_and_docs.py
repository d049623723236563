"""CI workflows, cruft updates and the rendered READMEs: what users meet first must work."""

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE_DIR, TEMPLATE_SPEC
from cookiecutter.generate import is_copy_only_path
from cookiecutter.main import cookiecutter

PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
WORKFLOW = Path(".github/workflows/ci.yml")


def render(output_dir, template=TEMPLATE_DIR, **options):
    """Render `template` with default answers plus `options`; return the project folder."""
    extra = {
        key: str(value).lower() if isinstance(value, bool) else value
        for key, value in options.items()
    }
    return Path(
        cookiecutter(str(template), no_input=True, output_dir=str(output_dir), extra_context=extra)
    )


@pytest.fixture(scope="module")
def default_project(tmp_path_factory):
    return render(tmp_path_factory.mktemp("default"))


def load_workflow(path):
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def run_lines(job):
    return [step["run"] for step in job["steps"] if "run" in step]


def uses(job, action):
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def nox_sessions_in(command):
    """Session names from a `nox -s a b` command line."""
    tokens = command.split()
    if "nox" not in tokens or "-s" not in tokens:
        return []
    names = []
    for token in tokens[tokens.index("-s") + 1 :]:
        if token.startswith("-"):
            break
        names.append(token)
    return names


def nox_sessions(folder, names):
    """{name: [python of each session]} in `folder`/noxfile.py; fails if one is missing."""
    listing = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json", "--session", *names],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 0, listing.stderr
    found = {}
    for session in json.loads(listing.stdout):
        found.setdefault(session["name"], []).append(session["python"])
    return found


# --- GitHub Actions -----------------------------------------------------------------------------


def test_workflow_files_are_copied_without_rendering():
    # cookiecutter matches these patterns against paths relative to the project template folder.
    assert is_copy_only_path(str(WORKFLOW), {"cookiecutter": TEMPLATE_SPEC})


def test_rendered_workflow_is_the_template_file_byte_for_byte(default_project):
    rendered = (default_project / WORKFLOW).read_text()
    assert rendered == (PROJECT_TEMPLATE / WORKFLOW).read_text()
    assert "${{ github.workflow }}" in rendered


def test_template_workflow_runs_lint_and_tests_on_python_3_10_to_3_13():
    workflow = load_workflow(TEMPLATE_DIR / WORKFLOW)
    assert {"push", "pull_request"} <= set(workflow["on"])
    job = workflow["jobs"]["tests"]
    assert job["runs-on"] == "ubuntu-latest"
    versions = job["strategy"]["matrix"]["python-version"]
    # Unquoted 3.10 would be the float 3.1.
    assert versions == ["3.10", "3.11", "3.12", "3.13"]
    (setup,) = uses(job, "actions/setup-python")
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    assert any(nox_sessions_in(line) == ["lint", "tests"] for line in run_lines(job))


def test_template_workflow_runs_smoke_once_on_python_3_11():
    job = load_workflow(TEMPLATE_DIR / WORKFLOW)["jobs"]["smoke"]
    assert "strategy" not in job
    (setup,) = uses(job, "actions/setup-python")
    assert setup["with"]["python-version"] == "3.11"
    assert any(nox_sessions_in(line) == ["smoke"] for line in run_lines(job))


def matches_github_glob(path, pattern):
    """Path matching as @actions/glob does it: `**/` is any number of folders, even none."""
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
    return re.fullmatch(regex, path.as_posix()) is not None


@pytest.mark.parametrize("job_name", ["tests", "smoke"])
def test_template_workflow_caches_pip_on_the_requirements_files(job_name):
    job = load_workflow(TEMPLATE_DIR / WORKFLOW)["jobs"][job_name]
    assert uses(job, "actions/checkout")
    (setup,) = uses(job, "actions/setup-python")
    assert setup["with"]["cache"] == "pip"
    patterns = setup["with"]["cache-dependency-path"].split()
    requirements = [
        *TEMPLATE_DIR.glob("requirements*.txt"),
        *PROJECT_TEMPLATE.rglob("requirements*.txt"),
    ]
    assert len(requirements) >= 3
    for path in requirements:
        relative = path.relative_to(TEMPLATE_DIR)
        assert any(matches_github_glob(relative, pattern) for pattern in patterns), relative
    assert any("python -m pip install nox" in line for line in run_lines(job))


def test_template_workflow_sessions_exist_and_run_on_the_job_python():
    jobs = load_workflow(TEMPLATE_DIR / WORKFLOW)["jobs"]
    job_python = {"tests": "${{ matrix.python-version }}", "smoke": "3.11"}
    for job_name, python in job_python.items():
        names = [name for line in run_lines(jobs[job_name]) for name in nox_sessions_in(line)]
        # A session pinned to other interpreters would fail on a runner that has only this one.
        for name, pythons in nox_sessions(TEMPLATE_DIR, names).items():
            assert set(pythons) <= {None, False, python}, (job_name, name, pythons)


def test_rendered_workflow_installs_dev_requirements_then_runs_tests_and_smoke(default_project):
    workflow = load_workflow(default_project / WORKFLOW)
    assert {"push", "pull_request"} <= set(workflow["on"])
    (job,) = workflow["jobs"].values()
    (setup,) = uses(job, "actions/setup-python")
    assert setup["with"]["cache"] == "pip"
    # The image's Python, rendered into a file of its own (the workflow itself is not rendered);
    # not .python-version, which pyenv would obey on the user's machine.
    assert setup["with"]["python-version-file"] == ".github/job-python-version"
    assert (default_project / ".github/job-python-version").read_text().strip() in {"3.12", "3.13"}
    assert not (default_project / ".python-version").exists()
    for name in setup["with"]["cache-dependency-path"].split():
        assert (default_project / name).is_file(), name
    lines = run_lines(job)
    install = next(
        i for i, line in enumerate(lines) if "pip install -r requirements-dev.txt" in line
    )
    run_nox = next(i for i, line in enumerate(lines) if nox_sessions_in(line))
    assert install < run_nox
    assert nox_sessions_in(lines[run_nox]) == ["tests", "smoke"]
    assert (default_project / "requirements-dev.txt").is_file()
    # Sessions run in the job's environment, where requirements-dev.txt is installed.
    for name, pythons in nox_sessions(default_project, ["tests", "smoke"]).items():
        assert set(pythons) == {False}, (name, pythons)


# --- cruft: render with provenance, then pull template changes into a project ------------------

GIT_IDENTITY = ["-c", "user.name=Template Test", "-c", "user.email=test@example.com"]
NOT_TEMPLATE_FILES = shutil.ignore_patterns(
    ".git", ".nox", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"
)


def git(folder, *args):
    command = ["git", *GIT_IDENTITY, "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, check=True).stdout


def cruft(folder, *args):
    return subprocess.run(
        [sys.executable, "-m", "cruft", *args], cwd=folder, capture_output=True, text=True
    )


def snapshot(folder):
    """{relative path: bytes} of the files a render produced (not git's or cruft's own)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and ".git" not in path.relative_to(folder).parts[:1]
        and path.name != ".cruft.json"
    }


@pytest.fixture
def template_repo(tmp_path):
    """A git repository holding this template's working tree: what users point cruft at."""
    repo = tmp_path / "template"
    shutil.copytree(TEMPLATE_DIR, repo, ignore=NOT_TEMPLATE_FILES)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "template v1")
    return repo


CRUFT_OPTIONS = {"project_slug": "kept-project", "aws_region": "ap-northeast-1"}


@pytest.fixture
def cruft_project(template_repo, tmp_path):
    created = cruft(
        tmp_path,
        "create",
        str(template_repo),
        "--no-input",
        "--output-dir",
        str(tmp_path / "projects"),
        "--extra-context",
        json.dumps(CRUFT_OPTIONS),
    )
    assert created.returncode == 0, created.stdout + created.stderr
    project = tmp_path / "projects" / CRUFT_OPTIONS["project_slug"]
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "rendered")
    return project


def test_cruft_create_renders_what_cookiecutter_renders_and_records_provenance(
    template_repo, cruft_project, tmp_path
):
    plain = render(tmp_path / "plain", template_repo, **CRUFT_OPTIONS)
    assert snapshot(cruft_project) == snapshot(plain)
    provenance = json.loads((cruft_project / ".cruft.json").read_text())
    assert provenance["template"] == str(template_repo)
    assert provenance["commit"] == git(template_repo, "rev-parse", "HEAD").strip()
    answers = provenance["context"]["cookiecutter"]
    assert answers["aws_region"] == "ap-northeast-1"
    assert answers["experiment_tracking"] == TEMPLATE_SPEC["experiment_tracking"][0]


def test_cruft_update_brings_template_changes_and_keeps_local_edits(
    template_repo, cruft_project, tmp_path
):
    assert cruft(cruft_project, "check").returncode == 0

    # The user tunes a config; the template gains a rendered line and a new file.
    config = cruft_project / "config" / "exp001.yaml"
    config.write_text(config.read_text() + "# tuned locally\n")
    git(cruft_project, "commit", "-q", "-am", "tune")
    project_template = template_repo / "{{cookiecutter.project_slug}}"
    readme = project_template / "README.md"
    readme.write_text(readme.read_text() + "\nJobs run in {{ cookiecutter.aws_region }}.\n")
    (project_template / "CHANGES.md").write_text("# {{ cookiecutter.project_slug }} changes\n")
    git(template_repo, "add", "-A")
    git(template_repo, "commit", "-q", "-m", "template v2")

    outdated = cruft(cruft_project, "check")
    assert outdated.returncode == 1, outdated.stdout
    assert "out of date" in outdated.stdout

    updated = cruft(cruft_project, "update", "--skip-apply-ask")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert cruft(cruft_project, "check").returncode == 0
    provenance = json.loads((cruft_project / ".cruft.json").read_text())
    assert provenance["commit"] == git(template_repo, "rev-parse", "HEAD").strip()

    assert config.read_text().endswith("# tuned locally\n")
    fresh = snapshot(render(tmp_path / "fresh", template_repo, **CRUFT_OPTIONS))
    assert fresh["README.md"].decode().endswith("Jobs run in ap-northeast-1.\n")
    assert (cruft_project / "CHANGES.md").read_text() == "# kept-project changes\n"
    project = snapshot(cruft_project)
    del project["config/exp001.yaml"], fresh["config/exp001.yaml"]
    assert project == fresh


# --- The rendered READMEs: English and Japanese in step, every command shown real ---------------

# Pairwise coverage of the options that change what the READMEs show (an L4 orthogonal array).
README_OPTIONS = [
    {"experiment_tracking": "mlflow", "container": "prebuilt", "use_spot_instances": False},
    {"experiment_tracking": "none", "container": "prebuilt", "use_spot_instances": True},
    {"experiment_tracking": "mlflow", "container": "custom", "use_spot_instances": True},
    {"experiment_tracking": "none", "container": "custom", "use_spot_instances": False},
]
for options, task in zip(README_OPTIONS, ["mnist", "images", "tabular", "regression"], strict=True):
    options["task"] = task
READMES = ["README.md", "README.ja.md"]
README_MAX_LINES = 200  # a map of the project, read before a first run; docs/ has the rest
SHELL_FENCES = {"bash", "sh", "shell"}
IGNORED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}
# --help must work on a machine with no AWS credentials and no network.
NO_AWS = {
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def option_id(options):
    return "-".join(str(value).lower() for value in options.values())


INLINE_COMMAND = re.compile(r"(python3? |bash |nox |mlflow )")


@dataclass
class Section:
    heading: str
    text: list = field(default_factory=list)  # every line under the heading
    prose: list = field(default_factory=list)  # lines outside code blocks
    commands: list = field(default_factory=list)  # shell commands, comments dropped
    python: list = field(default_factory=list)  # ```python blocks

    def inline_commands(self):
        """Commands quoted in the prose as `python ...`, even when the span wraps a line."""
        spans = re.findall(r"`([^`]+)`", " ".join(self.prose))
        return [span for span in spans if INLINE_COMMAND.match(span)]


class Readme:
    """A README as `##` sections with their text, shell commands and inline commands."""

    def __init__(self, path):
        self.path = path
        self.headings = []  # every heading line, any level, in order
        self.sections = [Section("(preamble)")]
        fence = None
        pending = ""
        for line in path.read_text("utf-8").splitlines():
            section = self.sections[-1]
            if line.startswith("```"):
                fence = line[3:].strip().lower() if fence is None else None
                if fence == "python":
                    section.python.append("")
                continue
            if fence is None and re.match(r"#{1,6} ", line):
                self.headings.append(line)
                if line.startswith("## "):
                    self.sections.append(Section(line))
                    continue
            section.text.append(line)
            if fence is None:
                section.prose.append(line)
            elif fence == "python":
                section.python[-1] += line + "\n"
            elif fence in SHELL_FENCES:
                pending += line
                if pending.endswith("\\"):
                    pending = pending[:-1] + " "
                    continue
                tokens = shell_tokens(pending)
                pending = ""
                if tokens:
                    section.commands.append(" ".join(tokens))

    def heading_levels(self):
        return [len(line) - len(line.lstrip("#")) for line in self.headings]

    def all_commands(self):
        for section in self.sections:
            yield from section.commands
            yield from section.inline_commands()

    def anchors(self):
        """The ids GitHub gives the headings (github-slugger: lowercase, drop punctuation)."""
        seen = {}
        for line in self.headings:
            text = re.sub(r"[`*_]", "", line.lstrip("#").strip()).lower()
            slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            yield slug if count == 0 else f"{slug}-{count}"

    def local_links(self):
        return [anchor for page, anchor in self.links() if not page]

    def links(self):
        """(page, anchor) of every link that is not a URL: ("", anchor) within this page."""
        prose = " ".join(line for section in self.sections for line in section.prose)
        found = re.findall(r"\]\(([^)\s#:]*)(?:#([^)\s]+))?\)", prose)
        return [(page, anchor) for page, anchor in found if page or anchor]


def shell_tokens(line):
    """Tokens of one shell line, comments dropped (they are prose, translated in README.ja.md)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def without_comments(python_code):
    """The code of a Python block, comments (translated in README.ja.md) and layout dropped."""
    tokens = tokenize.generate_tokens(io.StringIO(python_code).readline)
    return [token.string for token in tokens if token.type not in IGNORED_TOKENS]


def simple_commands(command):
    """Split `a && b | c` into [[a...], [b...], [c...]] without leading VAR=value assignments."""
    current = []
    for token in [*shell_tokens(command), ";"]:
        if token in SHELL_OPERATORS:
            while current and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", current[0]):
                current.pop(0)
            if current:
                yield current
            current = []
        else:
            current.append(token)


def help_commands(words):
    """(help argv, shown arguments, script or None) for each program a command line runs.

    Covers project scripts (`python x.py`, `bash x.sh`, under `torchrun` too) and `mlflow`.
    The help argv keeps the leading positional words (a subcommand, run_job.sh's config number)
    so that options of subcommands are looked up where they are defined.
    """
    runs = []
    if words[0] in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
        runs.append(([sys.executable, words[1]], words[2:], words[1]))
    elif words[0] in ("bash", "sh") and len(words) > 1 and words[1].endswith(".sh"):
        runs.append((["bash", words[1]], words[2:], words[1]))
    elif words[0] == "mlflow":
        runs.append(([sys.executable, "-m", "mlflow"], words[1:], None))
    elif words[0] == "torchrun":
        script_at = next(i for i, word in enumerate(words) if word.endswith(".py"))
        runs.append(([sys.executable, "-m", "torch.distributed.run"], words[1:script_at], None))
        runs.append(([sys.executable, words[script_at]], words[script_at + 1 :], words[script_at]))
    for program, arguments, script in runs:
        positional = []
        for word in arguments:
            if word.startswith("-"):
                break
            positional.append(word)
        yield [*program, *positional, "--help"], arguments, script


def long_options(arguments):
    return sorted({word.split("=", 1)[0] for word in arguments if word.startswith("--")})


@pytest.fixture(scope="module", params=README_OPTIONS, ids=option_id)
def documented_project(request, tmp_path_factory):
    return render(tmp_path_factory.mktemp("docs"), **request.param)


@pytest.fixture(scope="module")
def help_texts():
    """Memoized `--help` output per (project, argv): several tests ask for the same one."""
    cache = {}

    def run_help(project, argv):
        key = (project, tuple(argv))
        if key not in cache:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            # Scripts call `python`: the environment the README's Setup activates.
            env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
            cache[key] = subprocess.run(
                argv,
                cwd=project,
                env={**env, **NO_AWS},
                capture_output=True,
                text=True,
                timeout=180,
            )
        return cache[key]

    return run_help


def doc_pairs(project):
    """(English page, its Japanese twin) of every document: the README, then docs/*.md."""
    pages = sorted(path for path in (project / "docs").glob("*.md") if ".ja." not in path.name)
    english = [project / "README.md", *pages]
    return [(page, page.with_name(page.name.replace(".md", ".ja.md"))) for page in english]


def all_docs(project):
    return [page for pair in doc_pairs(project) for page in pair]


def test_every_render_has_the_english_and_the_japanese_readme(documented_project):
    assert [name for name in READMES if (documented_project / name).is_file()] == READMES
    for english, japanese in doc_pairs(documented_project):
        assert japanese.is_file(), f"{english.name} has no Japanese twin {japanese.name}"
    twins = {japanese for _, japanese in doc_pairs(documented_project)}
    assert set((documented_project / "docs").glob("*.ja.md")) <= twins


def test_the_readme_is_a_map_and_docs_hold_the_rest(documented_project):
    for name in READMES:
        lines = (documented_project / name).read_text("utf-8").count("\n")
        assert lines <= README_MAX_LINES, f"{name} has {lines} lines"
    english = Readme(documented_project / "README.md")
    linked = {page for page, _ in english.links() if page.startswith("docs/")}
    pages = {f"docs/{page.name}" for page, _ in doc_pairs(documented_project)[1:]}
    assert pages and linked == pages, "the README links every page of docs/, and no other"


def test_readmes_have_the_same_sections_in_the_same_order(documented_project):
    for english_page, japanese_page in doc_pairs(documented_project):
        english, japanese = Readme(english_page), Readme(japanese_page)
        assert japanese.heading_levels() == english.heading_levels(), (
            f"{japanese_page.name} must mirror {english_page.name} heading by heading:\n"
            + "\n".join(
                f"{en}  |  {ja}" for en, ja in zip_longest(english.headings, japanese.headings)
            )
        )
    readme = Readme(documented_project / "README.md")
    assert len(readme.sections) > 6, "README.md has fewer sections than the walkthrough needs"


def test_every_readme_section_has_content(documented_project):
    for page in all_docs(documented_project):
        for section in Readme(page).sections[1:]:
            assert "".join(section.text).strip(), (
                f"{page.name}: section {section.heading!r} is empty"
            )


def test_readmes_show_the_same_commands_section_by_section(documented_project):
    for english_page, japanese_page in doc_pairs(documented_project):
        english, japanese = Readme(english_page), Readme(japanese_page)
        for en, ja in zip(english.sections, japanese.sections, strict=True):
            assert ja.commands == en.commands, f"{english_page.name}: {en.heading!r}"
            code = [without_comments(block) for block in en.python]
            assert [without_comments(block) for block in ja.python] == code, en.heading
    readme = Readme(documented_project / "README.md")
    assert sum(len(section.commands) for section in readme.sections) >= 5


def test_readme_links_to_sections_point_at_headings(documented_project):
    for page in all_docs(documented_project):
        for target, anchor in Readme(page).links():
            linked = (page.parent / target).resolve() if target else page
            name = page.relative_to(documented_project)
            assert linked.is_file(), f"{name}: link to {target}, which is not in the render"
            if anchor and linked.suffix == ".md":
                anchors = set(Readme(linked).anchors())
                assert anchor in anchors, f"{name}: link {target}#{anchor} has no heading"


def test_readmes_leave_no_template_syntax_behind(documented_project):
    for page in all_docs(documented_project):
        text = page.read_text("utf-8")
        assert "{{" not in text and "{%" not in text, page.name


def test_a_render_names_mnist_only_where_the_task_is_mnist(documented_project):
    """Outside the MNIST task, only a task's own files (tasks/<folder>/) may name MNIST."""
    (task,) = [o["task"] for o in README_OPTIONS if documented_project.name.endswith(o["task"])]
    if task == "mnist":
        return
    own = (
        TEMPLATE_DIR
        / "{{cookiecutter.project_slug}}"
        / "tasks"
        / TEMPLATE_SPEC["_task_files"][task]
    )
    own_files = {path.relative_to(own).as_posix() for path in own.rglob("*") if path.is_file()}
    checked = 0
    for path in sorted(documented_project.rglob("*")):
        relative = path.relative_to(documented_project).as_posix()
        if path.is_file() and relative not in own_files and ".git" not in path.parts:
            try:
                text = path.read_text("utf-8")
            except UnicodeDecodeError:  # a picture, a cache
                continue
            checked += 1
            assert "mnist" not in text.lower(), f"{relative} names MNIST in a {task} render"
    assert checked > 50


@pytest.mark.slow  # about 10 s: --help imports torch, the SageMaker SDK, MLflow
def test_every_script_the_readmes_run_exists_and_accepts_the_options_shown(
    documented_project, help_texts
):
    checked = set()
    for page in all_docs(documented_project):
        name = page.name
        for command in Readme(page).all_commands():
            for words in simple_commands(command):
                for argv, arguments, script in help_commands(words):
                    if script:
                        assert (documented_project / script).is_file(), (
                            f"{name}: `{command}` runs a missing {script}"
                        )
                    options = long_options(arguments)
                    if (tuple(argv), tuple(options)) in checked:
                        continue
                    checked.add((tuple(argv), tuple(options)))
                    shown = help_texts(documented_project, argv)
                    shown_argv = " ".join(argv[1:])
                    assert shown.returncode == 0, f"`{shown_argv}` failed:\n{shown.stderr}"
                    for option in options:
                        listed = rf"(?<![\w-]){re.escape(option)}(?![\w-])"
                        assert re.search(listed, shown.stdout), (
                            f"{name}: `{command}` uses {option}, which `{shown_argv}` does not list"
                        )
    scripts = {argv[1] for argv, _ in checked}
    assert {"src/train.py", "scripts/prepare_dataset.py"} <= scripts, scripts


def test_files_and_nox_sessions_the_readmes_name_exist(documented_project):
    for language in (0, 1):  # the English pages, then the Japanese ones
        created, seen = set(), set()
        pages = [pair[language] for pair in doc_pairs(documented_project)]
        name = "the English docs" if language == 0 else "the Japanese docs"
        commands = [command for page in pages for command in Readme(page).all_commands()]
        for command in commands:
            for words in simple_commands(command):
                if words[0] == "cp" and len(words) == 3:
                    created.add(words[2])
                if "-r" in words and "install" in words:
                    seen.add("pip install -r")
                    requirements = words[words.index("-r") + 1]
                    assert (documented_project / requirements).is_file(), (name, command)
                if words[0] in ("bash", "sh") and words[1] == "scripts/run_job.sh":
                    seen.add("run_job.sh")
                    # bash scripts/run_job.sh 001 runs config/exp001.yaml
                    config = f"config/exp{words[2]}.yaml"
                    assert (documented_project / config).is_file() or config in created, (
                        f"{name}: `{command}` needs {config}"
                    )
                if words[0] == "nox":
                    seen.add("nox")
                    sessions = nox_sessions_in(" ".join(words))
                    assert sessions, f"{name}: `{command}` names no session"
                    nox_sessions(documented_project, sessions)
        assert seen == {"pip install -r", "run_job.sh", "nox"}, f"{name} shows only {seen}"


@pytest.mark.parametrize("container", TEMPLATE_SPEC["container"])
def test_post_gen_next_steps_are_commands_the_readme_shows(container, tmp_path):
    rendered = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            str(TEMPLATE_DIR),
            "-o",
            str(tmp_path / "out"),
            f"container={container}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    (project,) = (tmp_path / "out").iterdir()
    printed = [line.strip() for line in rendered.stdout.splitlines() if line.startswith("  ")]
    steps = [words for line in printed for words in simple_commands(line)]
    assert steps[0] == ["cd", project.name]
    documented = {
        tuple(words)
        for command in Readme(project / "README.md").all_commands()
        for words in simple_commands(command)
    }
    for words in steps[1:]:
        assert tuple(words) in documented, f"next step `{' '.join(words)}` is not in README.md"
    assert len(steps) >= 4


# --- The template README's quick start --------------------------------------------------------


def quick_start_commands():
    readme = (TEMPLATE_DIR / "README.md").read_text("utf-8")
    start = readme.index("## Quick start")
    section = readme[start : readme.index("\n## ", start)]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)[1]
    return block.strip().splitlines()


def test_quick_start_is_two_commands_and_the_second_is_what_ci_runs():
    render_command, test_command = quick_start_commands()
    # Rendered beside the clone: a project inside it would be a folder of the template's repository.
    assert render_command.endswith("python3 -m cookiecutter . -o ..")
    ci_lines = (TEMPLATE_DIR / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == test_command


def test_quick_start_render_command_works_in_a_clone(tmp_path):
    render_command, _ = quick_start_commands()
    clone = tmp_path / "clone"
    clone_command = ["git", "clone", "-q", str(TEMPLATE_DIR), str(clone)]
    done = subprocess.run(clone_command, capture_output=True)
    if done.returncode != 0:  # not a git checkout (e.g. an unpacked archive): copy it
        shutil.copytree(TEMPLATE_DIR, clone, ignore=shutil.ignore_patterns(".nox", ".git"))
    # The command as the README gives it (cookiecutter is installed here), without prompts.
    _, render = render_command.split(" && ")
    words = [sys.executable if word == "python3" else word for word in shlex.split(render)]
    output = tmp_path / "out"

    done = subprocess.run(
        [*words, "--no-input", "-o", str(output)], cwd=clone, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert (output / "sagemaker-mnist" / "src" / "train.py").is_file()
