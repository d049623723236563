"""src/hardware.py's thread count (one thread per core that other work leaves free) and the
DataLoader's workers (one per core left to each process, less the one it trains on)."""

import os
import subprocess
import sys

import pytest
import torch

import hardware

# /proc/stat's first line, read twice (user nice system idle iowait irq softirq steal guest
# guest_nice): in between, 150 ticks busy (user, system, irq, steal) and 150 idle or waiting.
BEFORE = "cpu  4705 150 1120 16250 520 0 12 3 0 0"
AFTER = "cpu  4805 150 1160 16350 570 5 12 8 0 0"


def ticks(line, stat_file):
    stat_file.write_text(line + "\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    return hardware.cpu_ticks(stat_file)


def test_the_busy_share_counts_every_state_but_idle_and_waiting(tmp_path):
    before, after = ticks(BEFORE, tmp_path / "before"), ticks(AFTER, tmp_path / "after")
    assert hardware.busy_fraction(before, after) == pytest.approx(0.5)
    assert hardware.busy_fraction(before, before) == 0.0  # no time passed: nothing to tell


def test_a_spinning_process_counts_as_a_busy_core():
    spinning = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert hardware.busy_cores(0.5) >= 0.5
    finally:
        spinning.kill()
        spinning.wait()


@pytest.fixture
def threads(monkeypatch):
    """torch's thread count, restored after the test; OMP_NUM_THREADS unset during it, and
    torch's own choice one thread per core."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(hardware, "TORCH_THREADS", os.cpu_count())
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("busy", "expected"), [(0.0, os.cpu_count()), (0.6, None), (99, 1)])
def test_threads_follow_the_free_cores_never_fewer_than_one(threads, monkeypatch, busy, expected):
    monkeypatch.setattr(hardware, "busy_cores", lambda: busy)
    expected = expected or max(1, round(os.cpu_count() - busy))
    assert hardware.use_free_cores() == expected == torch.get_num_threads()


def test_a_busy_start_does_not_lower_the_threads_of_later_runs(threads, monkeypatch):
    monkeypatch.setattr(hardware, "busy_cores", lambda: 99)
    assert hardware.use_free_cores() == 1
    monkeypatch.setattr(hardware, "busy_cores", lambda: 0.0)
    assert hardware.use_free_cores() == os.cpu_count()


def test_omp_num_threads_wins(threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(hardware, "busy_cores", lambda: 0.0)
    torch.set_num_threads(1)
    assert hardware.use_free_cores() == 1


@pytest.mark.parametrize(
    ("asked", "cores", "processes_on_host", "expected"),
    [(None, 8, "1", 7), (None, 8, "2", 3), (None, 2, "1", 1), (None, 1, "1", 0), (None, 64, "1", 8),
     (0, 8, "1", 0), (5, 2, "1", 5)],
)  # fmt: skip
def test_dataloader_workers_are_what_was_asked_or_the_cores_each_process_can_spare(
    monkeypatch, asked, cores, processes_on_host, expected
):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", processes_on_host)
    assert hardware.dataloader_workers(asked) == expected
