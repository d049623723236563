"""Benchmark the template: render, smoke path, `train.py --help`, time to accuracy against the
classic PyTorch MNIST example, throughput and memory, the launcher's dry run and source size, the
container's package install (and GPU figures on CUDA).

    python benchmarks/run.py [--repeats 3] [--baseline-repeats 1] [--quick] [--busy-core]

Run it with an interpreter that has the rendered project's requirements (torch, the SageMaker
SDK, ...): every figure is a whole process started with this same interpreter. It renders the
template into a temporary folder, so it needs nothing else. It prints a Markdown table and writes
it to benchmarks/results/<date>-<host>.md and benchmarks/LATEST.md.

Each figure is the median of repeated runs; peak memory is the largest peak resident set of the
measured process (and its children) over the runs, from wait4(2). This process stays small (it
never imports torch), since a child's peak RSS starts from its parent's. Targets are set for a
2-core CPU; timings are never asserted in tests.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
TEMPLATE = BENCHMARKS.parent
BASELINE = BENCHMARKS / "baseline.py"

SMOKE_TRAIN, SMOKE_TEST = 2000, 500  # the subset the rendered project's smoke test trains on
FULL_TRAIN, FULL_TEST = 60000, 10000  # MNIST's size: the time-to-accuracy set
GPU_EPOCHS, GPU_ACCURACY = 10, 0.99  # on CUDA: time until test accuracy reaches 99%

# Targets on the 2-core CPU this template is developed on.
RENDER_TARGET_S = 0.5
SMOKE_TARGET_S = 8.0
HELP_TARGET_S = 1.0
EPOCH_RATIO_TARGET = 0.15  # our one-epoch wall time / the baseline's
ACCURACY_MARGIN = 0.03  # ours may be at most 3 points below the baseline
DRY_RUN_TARGET_S = 2.0
INSTALL_TARGET_S = 25.0
# src/requirements.txt with full `mlflow` in place of mlflow-skinny, measured the same way
# (issue 15, 2026-11): what every job paid at start before.
INSTALL_BEFORE = "83 s, 885 MB (full mlflow)"
TARBALL_TARGET_BYTES = 64 * 1024
PEAK_MEMORY_TARGET_BYTES = 1024**3

# Ours reports each epoch on its validation part and the test set once at the end; the baseline
# reports the test set every epoch.
EPOCH_LINE = re.compile(
    r"^epoch=(?P<epoch>\d+) train_loss=\S+ (val|test)_loss=\S+ "
    r"(val|test)_accuracy=(?P<accuracy>[0-9.]+)$"
)
TEST_LINE = re.compile(r"^test_loss=\S+ test_accuracy=(?P<accuracy>[0-9.]+)$")


class BenchmarkError(Exception):
    """A measured process failed; the message says which and how."""


@dataclass
class Run:
    """One whole-process run: wall and CPU seconds, peak RSS bytes, when each line arrived."""

    wall: float
    peak_rss: int
    cpu: float = 0.0  # user + system seconds: less sensitive than wall to other load
    lines: list = field(default_factory=list)  # (seconds since start, text)

    def accuracies(self):
        """(seconds since start, accuracy) for every epoch line, in order."""
        found = []
        for seconds, text in self.lines:
            match = EPOCH_LINE.match(text)
            if match:
                found.append((seconds, float(match["accuracy"])))
        return found

    def final_accuracy(self):
        """The test set's accuracy at the end: its own line, else the last epoch line's."""
        tested = [float(m["accuracy"]) for _, text in self.lines if (m := TEST_LINE.match(text))]
        if tested:
            return tested[-1]
        accuracies = self.accuracies()
        if not accuracies:
            raise BenchmarkError("no `epoch=... test_accuracy=...` line in the output")
        return accuracies[-1][1]


@dataclass
class Row:
    figure: str  # what is measured, stated exactly
    ours: str
    baseline: str = "—"
    target: str = "—"
    status: str = "info"
    runs: str = "1"


def run_process(command, cwd=None, env=None, stop=None):
    """Run a command to completion (or until stop(line) is true); measure it from the outside.

    The clock runs from just before the start to the reaped exit, so interpreter start-up and
    imports count, as a user feels them. wait4(2) gives this child's own resource usage.
    """
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(part) for part in command],
        cwd=cwd,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for text in process.stdout:
        lines.append((time.perf_counter() - start, text.rstrip("\n")))
        if stop and stop(text.rstrip("\n")):
            os.kill(process.pid, signal.SIGTERM)  # not terminate(): it may reap the child
            break
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 and not stop:
        tail = "\n".join(text for _, text in lines[-15:])
        raise BenchmarkError(
            f"`{' '.join(map(str, command))}` exited {process.returncode}:\n{tail}"
        )
    rss_unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall=wall, peak_rss=usage.ru_maxrss * rss_unit, cpu=cpu, lines=lines)


def repeat(count, measure):
    """Call measure(i) count times; a list of Runs."""
    return [measure(index) for index in range(count)]


def median_wall(runs):
    return statistics.median(run.wall for run in runs)


def median_cpu(runs):
    return statistics.median(run.cpu for run in runs)


def peak_rss(runs):
    return max(run.peak_rss for run in runs)


def status(passed):
    return "PASS" if passed else "MISS"


def timed_row(figure, runs, target_seconds):
    """The row of a figure timed against a target: the median wall time of the runs."""
    wall = median_wall(runs)
    return Row(
        figure,
        ours=seconds(wall),
        target=f"≤ {target_seconds:g} s",
        status=status(wall <= target_seconds),
        runs=str(len(runs)),
    )


def seconds(value):
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def megabytes(value):
    return f"{value / 2**20:.0f} MiB"


def kilobytes(value):
    return f"{value / 1024:.1f} KiB"


def percent(value):
    return f"{100 * value:.2f} %"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


TORCH_INFO = """
import json, torch
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
print(json.dumps({"torch": torch.__version__, "gpu": ", ".join(gpus) or "none"}))
"""


def load_average():
    """1, 5 and 15-minute load averages: other work on the machine skews wall times."""
    try:
        return ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def machine_info():
    """What the figures depend on: host, OS, cores, CPU, GPU, Python and torch versions."""
    info = {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "load": load_average(),
    }
    # torch is asked in a child: imported here, it would make this process large, and every
    # child's peak RSS starts from its parent's (the kernel carries it across fork and exec).
    probe = subprocess.run(
        [sys.executable, "-c", TORCH_INFO], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        info.update(json.loads(probe.stdout))
    else:
        info.update(torch="not installed", gpu="none")
    return info


def format_table(machine, rows, when):
    """The report: a heading line with date and machine, then one Markdown table row per figure."""
    lines = [
        f"Measured {when:%Y-%m-%d %H:%M} UTC on `{machine['host']}`: {machine['cores']} cores, "
        f"{machine['cpu']}, GPU: {machine['gpu']}, {machine['os']}, Python {machine['python']}, "
        f"torch {machine['torch']}, {machine.get('threads', 'default threads')}. Load average "
        f"at start: {machine['load']}; at the end: {machine.get('load_end', 'unknown')}.",
        "",
        "| figure (what is timed) | runs | ours | baseline | target | status |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [row.figure, row.runs, row.ours, row.baseline, row.target, row.status]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def source_tarball_size(source_dir, ignore_patterns, work):
    """Bytes of a tar.gz of what the SageMaker SDK uploads from source_dir.

    The SDK copies source_dir with shutil.ignore_patterns(*ignore_patterns) and uploads the copy;
    packing that copy gives the size the upload amounts to.
    """
    staged = Path(work) / "source"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(source_dir, staged, ignore=shutil.ignore_patterns(*ignore_patterns))
    tarball = Path(work) / "source.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(staged, arcname=".")
    return tarball.stat().st_size


class Bench:
    """The measurements, sharing one temporary folder and one rendered project."""

    def __init__(self, work, repeats, baseline_repeats):
        self.work = Path(work)
        self.repeats = repeats
        self.baseline_repeats = baseline_repeats
        self.python = sys.executable
        self.project = None
        self.full_data = None

    def fresh(self, name):
        folder = self.work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def fresh_project(self, name):
        """A copy of the rendered project as a user has it: no results, checkpoints or
        tracking store from an earlier run (train.py would resume or reuse them)."""
        project = self.fresh(name) / self.project.name
        shutil.copytree(self.project, project)
        return project

    def train_command(self, project, data_dir, epochs=1):
        """The rendered train.py with its defaults: results go into that project's result/."""
        return [
            self.python,
            project / "src" / "train.py",
            "--epochs",
            epochs,
            "--data-dir",
            data_dir,
        ]

    def prepare_command(self, out, train_size, test_size):
        return [
            self.python,
            self.project / "scripts" / "prepare_dataset.py",
            "synthetic",
            "--train-size",
            train_size,
            "--test-size",
            test_size,
            "--out",
            out,
        ]

    def render(self):
        def once(index):
            output = self.fresh(f"render-{index}")
            command = [self.python, "-m", "cookiecutter", "--no-input", "--default-config"]
            return run_process([*command, TEMPLATE, "-o", output])

        runs = repeat(self.repeats, once)
        (self.project,) = (self.work / f"render-{self.repeats - 1}").iterdir()
        figure = "1 render: `cookiecutter --no-input` with the defaults, whole process"
        return [timed_row(figure, runs, RENDER_TARGET_S)]

    def smoke(self):
        def once(index):
            project = self.fresh_project(f"smoke-{index}")
            data = project.parent / "data"
            prepare = run_process(self.prepare_command(data, SMOKE_TRAIN, SMOKE_TEST))
            train = run_process(self.train_command(project, data))
            peak = max(prepare.peak_rss, train.peak_rss)
            return Run(prepare.wall + train.wall, peak, prepare.cpu + train.cpu)

        figure = (
            f"2 smoke: `prepare_dataset.py synthetic --train-size {SMOKE_TRAIN} --test-size "
            f"{SMOKE_TEST}` + `train.py --epochs 1` on it, in a fresh copy of the default "
            "render (tracking on), two whole processes, summed"
        )
        return [timed_row(figure, repeat(self.repeats, once), SMOKE_TARGET_S)]

    def help(self):
        def once(index):
            return run_process([self.python, self.project / "src" / "train.py", "--help"])

        figure = "2b `train.py --help`, whole process"
        return [timed_row(figure, repeat(self.repeats, once), HELP_TARGET_S)]

    def container_install(self):
        """What a job pays at start: src/requirements.txt into a fresh venv, no pip cache; and
        on a warm pool, where src/container_entry.py installs them as user packages into the
        pool's persistent cache: the pool's first job, then a job that reuses the instance."""
        requirements = self.project / "src" / "requirements.txt"
        venv = self.fresh("container-venv")
        run_process([self.python, "-m", "venv", venv])
        before = folder_bytes(venv)
        command = [venv / "bin" / "python", "-m", "pip", "install", "--no-cache-dir", "-q"]
        run = run_process([*command, "--disable-pip-version-check", "-r", requirements])
        added = folder_bytes(venv) - before
        # User packages are invisible in a venv: the interpreter it was made from, as an image's.
        cache = self.fresh("warm-pool-cache")
        warm_pool = {
            "PYTHONUSERBASE": str(cache / "python"),
            "PIP_USER": "1",
            "PIP_CACHE_DIR": str(cache / "pip"),
            "PIP_BREAK_SYSTEM_PACKAGES": "1",  # a distribution's Python here; not in an image
        }
        base_python = Path(sys.base_prefix) / "bin" / "python3"
        install = [base_python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        first = run_process([*install, "-r", requirements], env=warm_pool)
        reused = run_process([*install, "-r", requirements], env=warm_pool)
        return [
            Row(
                "7 container start-up: `pip install --no-cache-dir -r src/requirements.txt` "
                "(the default render's) into a fresh venv, whole process; size it adds",
                ours=f"{seconds(run.wall)}, {megabytes(added)}",
                baseline=INSTALL_BEFORE,
                target=f"≤ {INSTALL_TARGET_S:g} s",
                status=status(run.wall <= INSTALL_TARGET_S),
            ),
            Row(
                "7b the same install on a warm pool (`--keep-alive`: user packages in "
                "/opt/ml/sagemaker/warmpoolcache): a job that reuses the instance, against the "
                "pool's first job",
                ours=seconds(reused.wall),
                baseline=f"{seconds(first.wall)} (first job)",
                target="≤ 5 s",
                status=status(reused.wall <= 5),
            ),
        ]

    def prepare_full(self):
        self.full_data = self.fresh("data-60k")
        run = run_process(self.prepare_command(self.full_data, FULL_TRAIN, FULL_TEST))
        return [
            Row(
                f"3a data: `prepare_dataset.py synthetic` ({FULL_TRAIN:,} train + {FULL_TEST:,} "
                "test), the set both trainings below use",
                ours=seconds(run.wall),
            )
        ]

    def time_to_accuracy(self):
        def ours(index):
            project = self.fresh_project(f"ours-{index}")
            return run_process(self.train_command(project, self.full_data))

        def baseline(index):
            return run_process([self.python, BASELINE, "--data-dir", self.full_data])

        our_runs = repeat(self.repeats, ours)
        base_runs = repeat(self.baseline_repeats, baseline)
        our_wall, base_wall = median_wall(our_runs), median_wall(base_runs)
        our_accuracy = statistics.median(run.final_accuracy() for run in our_runs)
        base_accuracy = statistics.median(run.final_accuracy() for run in base_runs)
        ratio = our_wall / base_wall
        runs = f"{len(our_runs)} / {len(base_runs)}"
        return [
            Row(
                f"3b one epoch on the {FULL_TRAIN:,} set: `train.py --epochs 1` vs "
                "`benchmarks/baseline.py`, whole process (start-up, load, train, test, save; "
                "train.py's defaults, fresh project copy)",
                ours=seconds(our_wall),
                baseline=seconds(base_wall),
                runs=runs,
            ),
            Row(
                "3b′ CPU time (user + system) of those processes: what other load disturbs least",
                ours=seconds(median_cpu(our_runs)),
                baseline=seconds(median_cpu(base_runs)),
                runs=runs,
            ),
            Row(
                "3c ratio of the one-epoch wall times, ours / baseline",
                ours=f"{ratio:.3f}",
                target=f"≤ {EPOCH_RATIO_TARGET}",
                status=status(ratio <= EPOCH_RATIO_TARGET),
                runs=runs,
            ),
            Row(
                f"3d test accuracy after that epoch ({FULL_TEST:,} test images)",
                ours=percent(our_accuracy),
                baseline=percent(base_accuracy),
                target=f"≥ baseline − {100 * ACCURACY_MARGIN:.0f} points",
                status=status(our_accuracy >= base_accuracy - ACCURACY_MARGIN - 1e-9),
                runs=runs,
            ),
            Row(
                f"4a throughput: {FULL_TRAIN:,} training images / that whole-process wall time",
                ours=f"{FULL_TRAIN / our_wall:,.0f} images/s",
                baseline=f"{FULL_TRAIN / base_wall:,.0f} images/s",
                runs=runs,
            ),
            Row(
                "4b peak memory: largest peak RSS of that training process",
                ours=megabytes(peak_rss(our_runs)),
                baseline=megabytes(peak_rss(base_runs)),
                target="≤ 1 GiB",
                status=status(peak_rss(our_runs) <= PEAK_MEMORY_TARGET_BYTES),
                runs=runs,
            ),
        ]

    def launcher(self):
        def once(index):
            command = [self.python, self.project / "scripts" / "run_job.py", "--dry-run"]
            return run_process([*command, "--config", self.project / "config" / "exp001.yaml"])

        figure = "5a `run_job.py --config config/exp001.yaml --dry-run`, whole process"
        dry_run = timed_row(figure, repeat(self.repeats, once), DRY_RUN_TARGET_S)
        size = source_tarball_size(self.project / "src", self.ignore_patterns(), self.work)
        return [
            dry_run,
            Row(
                "5b source size: tar.gz of the src/ files the launcher uploads (its ignore "
                "patterns applied)",
                ours=kilobytes(size),
                target="≤ 64 KiB",
                status=status(size <= TARBALL_TARGET_BYTES),
            ),
        ]

    def ignore_patterns(self):
        """The launcher's SourceCode.ignore_patterns, read from the rendered launcher/."""
        code = (
            "import json, sys; sys.path[:0] = ['.', 'src']; from launcher import job_request; "
            "print(json.dumps(job_request.IGNORE_PATTERNS))"
        )
        run = run_process([self.python, "-c", code], cwd=self.project)
        return json.loads(run.lines[-1][1])

    def gpu(self):
        """On CUDA only: seconds until an epoch line reports GPU_ACCURACY (the figures above
        already ran on the GPU, since train.py and the baseline both pick CUDA when present)."""

        def reached(line):
            match = EPOCH_LINE.match(line)
            return bool(match) and float(match["accuracy"]) >= GPU_ACCURACY

        def ours(index):
            project = self.fresh_project(f"gpu-{index}")
            command = self.train_command(project, self.full_data, GPU_EPOCHS)
            return run_process(command, stop=reached)

        def baseline(index):
            command = [self.python, BASELINE, "--data-dir", self.full_data]
            return run_process([*command, "--epochs", GPU_EPOCHS], stop=reached)

        our_time = statistics.median(
            seconds_to(run, GPU_ACCURACY) for run in repeat(self.repeats, ours)
        )
        base_time = statistics.median(
            seconds_to(run, GPU_ACCURACY) for run in repeat(self.baseline_repeats, baseline)
        )
        return [
            Row(
                f"6 GPU: time to {100 * GPU_ACCURACY:.0f} % test accuracy on the {FULL_TRAIN:,} "
                f"set (at most {GPU_EPOCHS} epochs), from process start",
                ours=format_optional_seconds(our_time),
                baseline=format_optional_seconds(base_time),
                runs=f"{self.repeats} / {self.baseline_repeats}",
            )
        ]


def seconds_to(run, accuracy):
    """Seconds from process start to the first epoch line at or above accuracy (inf if never)."""
    for moment, reached in run.accuracies():
        if reached >= accuracy:
            return moment
    return float("inf")


def format_optional_seconds(value):
    return seconds(value) if value != float("inf") else f"not reached in {GPU_EPOCHS} epochs"


def folder_bytes(folder):
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def measure_all(bench, gpu):
    """Every figure, in table order; a figure whose process fails becomes an ERROR row."""
    steps = [bench.render, bench.smoke, bench.help, bench.prepare_full, bench.time_to_accuracy]
    steps += [bench.launcher, bench.container_install]
    if gpu:
        steps.append(bench.gpu)
    rows = []
    for step in steps:
        print(f"measuring: {step.__name__} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(step())
        except (BenchmarkError, OSError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0]
            rows.append(Row(f"{step.__name__}: failed", ours=first_line, status="ERROR"))
            print(error, file=sys.stderr)
    return rows


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per figure; the median is shown (default: %(default)s)",
    )
    parser.add_argument(
        "--baseline-repeats",
        type=int,
        default=1,
        help="runs of the baseline epoch (minutes each on a small CPU; default 1)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one run per figure (same as --repeats 1)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads per measured process (OMP_NUM_THREADS); default: torch's choice. "
        "--threads 1 compares fairly on a machine that is busy with other work",
    )
    parser.add_argument(
        "--busy-core",
        action="store_true",
        help="keep one core busy with another process while measuring (a CI machine's usual "
        "state; issue 15's threading figure is measured so)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=BENCHMARKS / "results",
        help="folder for <date>-<host>.md (default: benchmarks/results/)",
    )
    parser.add_argument(
        "--keep", type=Path, help="measure in this folder and keep it (default: a temporary one)"
    )
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in ("repeats", "baseline_repeats", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    repeats = 1 if args.quick else args.repeats
    baseline_repeats = 1 if args.quick else args.baseline_repeats
    if args.threads:  # the children inherit it; torch reads it at start-up
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    machine = machine_info()
    machine["threads"] = (
        f"{args.threads} thread(s) per process" if args.threads else "default threads"
    )
    when = datetime.datetime.now(datetime.timezone.utc)
    spinner = None
    if args.busy_core:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        machine["threads"] += ", one core kept busy by another process"
    try:
        with tempfile.TemporaryDirectory(prefix="sm-template-bench-") as temporary:
            work = args.keep or Path(temporary)
            work.mkdir(parents=True, exist_ok=True)
            bench = Bench(work, repeats, baseline_repeats)
            rows = measure_all(bench, gpu=machine["gpu"] != "none")
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()
    machine["load_end"] = load_average()
    table = format_table(machine, rows, when)
    print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    result_file = args.results / f"{when:%Y-%m-%d}-{machine['host']}.md"
    result_file.write_text(table, "utf-8")
    (BENCHMARKS / "LATEST.md").write_text(table, "utf-8")
    print(f"wrote {result_file} and {BENCHMARKS / 'LATEST.md'}", file=sys.stderr)
    if any(row.status == "ERROR" for row in rows):
        sys.exit("error: some figures could not be measured (see the ERROR rows)")


if __name__ == "__main__":
    main()
