"""benchmarks/: the report's table and machine line, the process measurements, the baseline model.

Timings are never asserted: these tests check what the benchmark reports and how it measures.
"""

import datetime
import importlib.util
import os
import sys
import tarfile

import pytest
from conftest import TEMPLATE_DIR


def load(name):
    path = TEMPLATE_DIR / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load("run")

MACHINE = {
    "host": "ci-runner",
    "os": "Linux 6.1",
    "cores": 2,
    "cpu": "Some CPU @ 2.3GHz",
    "gpu": "none",
    "python": "3.12.1",
    "torch": "2.14.1",
    "load": "0.5, 0.4, 0.3",
    "load_end": "1.2, 0.6, 0.4",
    "threads": "1 thread(s) per process",
}
WHEN = datetime.datetime(2026, 11, 21, 23, 30, tzinfo=datetime.timezone.utc)


def python_child(code):
    return [sys.executable, "-c", code]


def test_table_heading_names_the_date_and_the_machine():
    heading = bench.format_table(MACHINE, [], WHEN).splitlines()[0]
    assert heading.startswith("Measured 2026-11-21 23:30 UTC on `ci-runner`")
    expected = ["2 cores", "Some CPU @ 2.3GHz", "GPU: none", "Python 3.12.1", "torch 2.14.1"]
    expected += ["at start: 0.5, 0.4, 0.3", "at the end: 1.2, 0.6, 0.4", "1 thread(s) per process"]
    for value in expected:
        assert value in heading


def test_table_has_one_markdown_row_per_figure_with_its_status():
    rows = [
        bench.Row("1 render", ours="0.41 s", target="≤ 0.5 s", status="PASS", runs="3"),
        bench.Row("5b a | b", ours="70.0 KiB", target="≤ 64 KiB", status="MISS"),
    ]
    table = bench.format_table(MACHINE, rows, WHEN).splitlines()
    header, rule, *body = table[2:]
    assert header == "| figure (what is timed) | runs | ours | baseline | target | status |"
    assert rule == "|---|---|---|---|---|---|"
    assert body == [
        "| 1 render | 3 | 0.41 s | — | ≤ 0.5 s | PASS |",
        "| 5b a \\| b | 1 | 70.0 KiB | — | ≤ 64 KiB | MISS |",
    ]


def test_machine_info_reports_this_machine_and_its_torch():
    torch = pytest.importorskip("torch")
    info = bench.machine_info()
    assert info["cores"] == os.cpu_count()
    assert info["cpu"]
    assert len(info["load"].split(", ")) == 3
    assert info["torch"] == torch.__version__
    assert (info["gpu"] != "none") == torch.cuda.is_available()


def test_run_process_reports_the_childs_own_peak_memory_and_output():
    gib = 2**30  # more than this test process holds: a child's peak starts from its parent's
    allocate = f"b = bytearray({gib}); b[::4096] = b'x' * len(b[::4096]); print('done')"
    large = bench.run_process(python_child(allocate))
    assert large.peak_rss >= gib
    assert [text for _, text in large.lines] == ["done"]
    small = bench.run_process(python_child("print('small')"))
    assert small.peak_rss < gib  # per child (wait4), not the largest child so far


def test_failing_process_is_an_error_that_shows_its_output():
    with pytest.raises(bench.BenchmarkError, match="exited 3") as error:
        bench.run_process(python_child("print('dataset is missing'); raise SystemExit(3)"))
    assert "dataset is missing" in str(error.value)


def test_epoch_lines_give_accuracies_and_time_to_accuracy():
    lines = [
        (0.5, "loading"),
        (2.0, "epoch=1 train_loss=0.5 test_loss=0.3 test_accuracy=0.9512"),
        (3.5, "epoch=2 train_loss=0.1 test_loss=0.05 test_accuracy=0.9921"),
    ]
    run = bench.Run(wall=4.0, peak_rss=0, lines=lines)
    assert run.accuracies() == [(2.0, 0.9512), (3.5, 0.9921)]
    assert run.final_accuracy() == 0.9921
    assert bench.seconds_to(run, 0.99) == 3.5
    assert bench.seconds_to(run, 0.999) == float("inf")
    with pytest.raises(bench.BenchmarkError, match="no `epoch="):
        bench.Run(wall=1.0, peak_rss=0, lines=[(0.1, "epoch 1 done")]).final_accuracy()


def test_ours_reports_validation_each_epoch_and_the_test_set_once_at_the_end():
    lines = [
        (2.0, "epoch=1 train_loss=0.5 val_loss=0.3 val_accuracy=0.9612"),
        (2.5, "test_loss=0.31 test_accuracy=0.9577"),
    ]
    run = bench.Run(wall=3.0, peak_rss=0, lines=lines)
    assert run.accuracies() == [(2.0, 0.9612)]
    assert run.final_accuracy() == 0.9577  # the test set's, as the baseline's


def test_stop_ends_the_child_at_the_first_matching_line():
    epoch_line = "epoch=1 train_loss=1 test_loss=1 test_accuracy=0.995"
    print_then_hang = f"import time; print('{epoch_line}'); time.sleep(600)"
    run = bench.run_process(
        python_child(print_then_hang), stop=lambda line: line.startswith("epoch=")
    )
    assert [text for _, text in run.lines] == [epoch_line]
    assert bench.seconds_to(run, 0.99) == run.lines[0][0]


def test_source_tarball_holds_what_the_launcher_uploads(tmp_path):
    source = tmp_path / "src"
    (source / "__pycache__").mkdir(parents=True)
    (source / "train.py").write_text("print('train')\n")
    (source / "__pycache__" / "train.cpython-312.pyc").write_bytes(b"\0" * 50_000)
    size = bench.source_tarball_size(source, ["__pycache__", "*.pyc"], tmp_path / "work")
    with tarfile.open(tmp_path / "work" / "source.tar.gz") as archive:
        names = sorted(archive.getnames())
    assert names == [".", "./train.py"]
    assert size == (tmp_path / "work" / "source.tar.gz").stat().st_size


@pytest.mark.parametrize("option", ["--repeats", "--baseline-repeats", "--threads"])
def test_counts_below_one_stop_before_measuring(option, capsys, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        bench.main([option, "0", "--results", str(tmp_path)])
    assert stopped.value.code == 2
    assert f"{option} must be at least 1, got 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_baseline_is_the_classic_two_conv_network():
    torch = pytest.importorskip("torch")
    baseline = load("baseline")
    model = baseline.Net().eval()
    assert model.fc1.in_features == 9216 and model.fc1.out_features == 128
    with torch.no_grad():
        log_probabilities = model(torch.randn(5, 1, 28, 28))
    assert log_probabilities.shape == (5, 10)
    assert torch.allclose(log_probabilities.exp().sum(dim=1), torch.ones(5), atol=1e-5)
