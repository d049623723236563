"""Checkpoints that survive spot interruptions: atomic writes, resume, and SIGTERM.

SageMaker syncs the checkpoint folder to S3 while a job runs and copies it back when an
interrupted spot job restarts; the restarted train.py then resumes where the last one stopped.
A checkpoint holds everything a run depends on (weights, optimizer, schedule, random states and
the position in the epoch), so an interrupted, resumed run ends with the same weights as one
that never stopped.
"""

import os
import signal
import threading

import torch

FILE_NAME = "checkpoint.pt"


def save(folder, state):
    """Write atomically: a reader (or an S3 sync) sees the old or the new file, never half."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{FILE_NAME}.partial"
    torch.save(state, partial)
    os.replace(partial, folder / FILE_NAME)


def load(folder):
    """The saved state, or None when there is no checkpoint."""
    path = folder / FILE_NAME
    if not path.is_file():
        return None
    # Tensors and plain values only: loading a file from S3 runs no code in it.
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_states(shuffle):
    states = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states, shuffle):
    torch.set_rng_state(states["torch"])
    shuffle.set_state(states["shuffle"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Interrupted(Exception):
    """Stopped by a signal after saving a checkpoint: running again resumes."""

    def __init__(self, received, folder):
        super().__init__(f"stopped by {received.name}; checkpoint in {folder}, run again to resume")
        self.exit_code = 128 + received.value  # what a shell reports for that signal


class StopSignals:
    """Turns SIGTERM (SageMaker stopping or reclaiming the instance) and SIGINT (Ctrl-C) into
    a flag that the training loop checks between steps, so it can checkpoint and exit cleanly.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals need the main thread
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number, frame):
        self.received = signal.Signals(number)

    def __exit__(self, *exc_info):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
