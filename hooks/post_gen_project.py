"""Finish the rendered project: data/result folders, run bits, optional files.

Runs inside the new project directory. Installs nothing, so rendering stays fast.
"""

import json
import shlex
import shutil
import stat
from pathlib import Path

CONTEXT = json.loads(r"""{{ cookiecutter | tojson }}""")

# Their contents are git-ignored; .gitkeep keeps the folders in a fresh clone.
KEPT_FOLDERS = ["dataset", "rawdata", "result/model", "result/output"]

# Files that only make sense for some choices: option -> (the values that keep them, files).
OPTIONAL_FILES = {
    "experiment_tracking": (
        {"mlflow"},
        ["src/tracking.py", "tests/test_tracking.py", "docs/tracking.md", "docs/tracking.ja.md"],
    ),
    "container": (
        {"custom"},
        [
            "docker/Dockerfile",
            "scripts/build_and_push.sh",
            "tests/test_container.py",
            "docs/custom-container.md",
            "docs/custom-container.ja.md",
        ],
    ),
    # Unpacks a competition's archive: for the tasks whose data comes that way.
    "task": ({"images", "tabular", "regression"}, ["launcher/rawdata.py"]),
}


def place_task_files(root):
    """The chosen task's own files (tasks/<folder>/src/data.py, ...; cookiecutter.json's
    _task_files names the folder) into their places; the other tasks' files go."""
    chosen = root / "tasks" / CONTEXT["_task_files"][CONTEXT["task"]]
    for source in sorted(chosen.rglob("*")):
        if source.is_file():
            target = root / source.relative_to(chosen)
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
    shutil.rmtree(root / "tasks")


def make_kept_folders(root):
    for name in KEPT_FOLDERS:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".gitkeep").touch()


def make_scripts_executable(root):
    for script in [*root.glob("**/*.sh"), *root.glob("scripts/*.py"), root / "src/train.py"]:
        if script.is_file():
            mode = script.stat().st_mode
            script.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def remove_unused_files(root):
    for option, (kept_for, files) in OPTIONAL_FILES.items():
        if CONTEXT[option] not in kept_for:
            for name in files:
                path = root / name
                path.unlink(missing_ok=True)
                if path.parent != root and not any(path.parent.iterdir()):
                    path.parent.rmdir()


def print_next_steps(root):
    target = (
        f"{CONTEXT['instance_type']} in {CONTEXT['aws_region']}"
        f" (account {CONTEXT['aws_account_id']})"
    )
    steps = [
        f"cd {shlex.quote(root.name)}",
        "python3 -m venv .venv && . .venv/bin/activate",
        "python -m pip install -r requirements-dev.txt",
        "python scripts/prepare_dataset.py synthetic",
        "python src/train.py --epochs 2",
        f"bash scripts/run_job.sh 001 --dry-run    # the job for {target}; no AWS call",
    ]
    if CONTEXT["container"] == "custom":
        steps.append("bash scripts/build_and_push.sh    # your image on ECR, before the first job")
    print(f"\nCreated {root.name}/. Next steps (README.md, in Japanese README.ja.md):")
    print("\n".join(f"  {step}" for step in steps))


def main():
    root = Path.cwd()
    place_task_files(root)
    make_kept_folders(root)
    remove_unused_files(root)
    make_scripts_executable(root)
    print_next_steps(root)


if __name__ == "__main__":
    main()
