"""Checkpoints that survive spot interruptions: atomic writes, resume, and SIGTERM.

SageMaker syncs the checkpoint folder to S3 while a job runs and copies it back when an
interrupted spot job restarts; the restarted train.py then resumes where the last one stopped.
A checkpoint holds everything a run depends on (weights, optimizer, schedule, random states and
the position in the epoch), so an interrupted, resumed run ends with the same weights as one
that never stopped.
"""

import errno
import hashlib
import json
import os
import shutil
import signal
import threading

import torch

LOW_DISK_BYTES = 16 * 1024 * 1024


def write_atomically(path, write, content):
    """write(content, partial_path), then rename over `path`: a reader (or an S3 sync) sees the
    old file or the new one, never half of one; a failure (a full disk) leaves no partial file
    and raises OSError naming `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    try:
        write(content, partial)
        os.replace(partial, path)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(error.errno, error.strerror or str(error), str(path)) from None
        raise


def save_tensors(state, path):
    """torch.save, with a failed write (a full disk) reported as the OSError it is."""
    try:
        torch.save(state, path)
    except RuntimeError as error:  # torch's writer reports a short write as "unexpected pos"
        if shutil.disk_usage(path.parent).free >= LOW_DISK_BYTES:
            reason = " ".join(str(error).split())
            raise OSError(errno.EIO, f"torch.save failed ({reason})") from error
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None


def as_json(settings):
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def path_for(folder, settings):
    """A run's checkpoint: checkpoint-<digest of its settings>.pt. Runs of other settings (other
    configs' or trials' sharing a job's checkpoint folder) never touch each other's files."""
    digest = hashlib.sha1(json.dumps(as_json(settings), sort_keys=True).encode()).hexdigest()
    return folder / f"checkpoint-{digest[:12]}.pt"


def save(folder, state):
    """The checkpoint, then beside it its settings as JSON (a reader names what differs)."""
    path = path_for(folder, state["settings"])
    write_atomically(path, save_tensors, state)
    write_atomically(path.with_suffix(".json"), write_json, as_json(state["settings"]))


def write_json(content, path):
    path.write_text(json.dumps(content, indent=2) + "\n")


def read(path):
    # Tensors and plain values only: loading a file from S3 runs no code in it.
    return torch.load(path, map_location="cpu", weights_only=True)


def load_matching(folder, settings):
    """(the checkpoint of these settings or None, the settings of the newest other one or None).

    Checkpoints of other settings stay as they are: a run with theirs resumes from them."""
    path = path_for(folder, settings)
    if path.is_file():
        return read(path), None
    others = [
        json_file
        for json_file in folder.glob("checkpoint-*.json")
        if json_file != path.with_suffix(".json")
    ]
    if not others:
        return None, None
    newest = max(others, key=lambda json_file: json_file.stat().st_mtime)
    try:
        return None, json.loads(newest.read_text())
    except (OSError, ValueError):  # half of a sync: nothing to name
        return None, None


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

    def __init__(self, received, folder, position):
        super().__init__(
            f"stopped by {received.name} at {position}; checkpoint in {folder}, run again to resume"
        )
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

    def __exit__(self, kind, error, traceback):
        for number, handler in self.previous.items():
            # A stop under way keeps SIGTERM handled until the process has said where it stopped
            # and exited: torchrun sends one more to every process once the first one has exited,
            # and the default action would kill the others before they report.
            if not (number == signal.SIGTERM and isinstance(error, Interrupted)):
                signal.signal(number, handler)
