"""Where and how the arithmetic runs: the device, reproducible kernels, mixed precision, and the
DataLoader's workers."""

import functools
import os
import time

import torch


def pick_device(processes):
    """This process's GPU when there are GPUs, else Apple's GPU (single process), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", processes.local_rank)
    if torch.backends.mps.is_available() and not processes.active:  # no process-group backend
        return torch.device("mps")
    return torch.device("cpu")


TORCH_THREADS = torch.get_num_threads()  # torch's own choice, before any call below lowers it


def use_free_cores():
    """Compute on as many CPU threads as there are cores that other work leaves free (at most
    torch's choice, one per physical core); return the count. OMP_NUM_THREADS, when set, wins
    (torchrun sets it to 1 per process).

    OpenMP threads spin while they wait for each other, so a thread on a core that another
    process holds slows every step, more than one thread fewer does (the template's
    benchmarks/LATEST.md has the figures).
    """
    if "OMP_NUM_THREADS" not in os.environ:
        free = round((os.cpu_count() or 1) - busy_cores())
        torch.set_num_threads(max(1, min(TORCH_THREADS, free)))
    return torch.get_num_threads()


def busy_cores(seconds=0.1):
    """How many cores other processes keep busy, over `seconds` of this one's sleep (Linux's
    /proc/stat; elsewhere 0: all cores count as free)."""
    try:
        before = cpu_ticks()
        time.sleep(seconds)
        return (os.cpu_count() or 1) * busy_fraction(before, cpu_ticks())
    except (OSError, ValueError):
        return 0.0


def cpu_ticks(stat_file="/proc/stat"):
    """Its first line: (ticks of all cores in any state, ticks idle or waiting)."""
    with open(stat_file) as stat:
        _, *ticks = stat.readline().split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(tick) for tick in ticks[:8])
    return user + nice + system + idle + iowait + irq + softirq + steal, idle + iowait


def busy_fraction(before, after):
    """The share of the cores' time that was busy between two cpu_ticks() readings."""
    total, idle = after[0] - before[0], after[1] - before[1]
    return (total - idle) / total if total > 0 else 0.0


def make_reproducible(seed, deterministic):
    torch.manual_seed(seed)  # CPU and every GPU
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)


def mixed_precision(device, enabled):
    """(autocast, scaler): bfloat16 (or float16 with a gradient scaler) on CUDA when enabled;
    plain float32 elsewhere, where both do nothing.

    with autocast():
        loss = ...
    scaler.scale(loss).backward()
    """
    dtype = None
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    autocast = functools.partial(
        torch.autocast, device.type, dtype=dtype, enabled=dtype is not None
    )
    # float16 gradients can underflow; the scaler keeps them in range (bfloat16 needs none).
    return autocast, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def dataloader_workers(asked):
    """How many DataLoader worker processes read the data of a split that is not in memory:
    `asked` (--num-workers), or for "auto" one per core this process can count on, less the
    one training on it, at most 8 (torchrun's LOCAL_WORLD_SIZE: processes on this host)."""
    if asked is not None:
        return asked
    per_process = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(8, per_process - 1))
