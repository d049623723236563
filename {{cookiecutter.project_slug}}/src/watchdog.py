"""A hang watchdog: a run that stops making progress ends instead of billing until --max-run.

A DataLoader worker stuck on a file, a collective waiting for a process that died, a deadlock
in data.py: the job sits in "Training" and bills, with nothing in the log. train.py calls
progress() after every training step and evaluation batch; when none came for --stall-timeout
seconds, a thread of its own prints every thread's stack (faulthandler), writes SageMaker's
failure file (its text becomes the job's FailureReason, which triage reads) and ends the
process with EXIT_STALLED. The last checkpoint stays: a relaunch resumes from it.
"""

import faulthandler
import os
import sys
import threading
import time
from pathlib import Path

EXIT_STALLED = 124  # as timeout(1) ends what it stopped
STALL_WORDS = "no training step finished in"  # launcher/job_results.py's triage looks for them

_last_progress = time.monotonic()


def progress():
    """A step (or an evaluation batch) has finished."""
    global _last_progress
    _last_progress = time.monotonic()


def failure_file():
    """SageMaker's failure file, /opt/ml/output/failure in a job (None on this machine). The
    SDK's driver writes its own only when none is there, so the cause written here stays."""
    output = os.environ.get("SM_OUTPUT_DIR")
    return Path(output) / "failure" if output else None


def write_failure(message):
    """Write the failure file of a job (nothing outside one); never raises."""
    path = failure_file()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(message + "\n")
    except OSError:
        pass


def stalled(seconds):
    """The end of a stalled run: stacks, the failure file, the exit status (no return)."""
    message = (
        f"stalled: {STALL_WORDS} {seconds:g} s (--stall-timeout); every thread's stack is in "
        "the log above this line; the last checkpoint stays and a relaunch resumes from it"
    )
    print(f"\n{message.split(';')[0]}; the stack of every thread:", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    print(f"error: {message}", file=sys.stderr, flush=True)
    write_failure(message)
    sys.stdout.flush()
    os._exit(EXIT_STALLED)  # the main thread is stuck: no clean exit can reach it


class Watchdog:
    """Watches progress() while the run is inside `with Watchdog(seconds):` (0: off)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.done = threading.Event()
        self.thread = None

    def __enter__(self):
        if self.seconds > 0:
            progress()
            self.thread = threading.Thread(target=self.watch, name="stall-watchdog", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        if self.thread is not None:
            self.thread.join()

    def watch(self):
        while True:
            quiet = time.monotonic() - _last_progress
            if quiet >= self.seconds:
                stalled(self.seconds)
            if self.done.wait(self.seconds - quiet):
                return
