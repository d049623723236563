"""Where and how the arithmetic runs: the device, reproducible kernels, mixed precision."""

import functools
import os

import torch


def pick_device(processes):
    """This process's GPU when there are GPUs, else Apple's GPU (single process), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", processes.local_rank)
    if torch.backends.mps.is_available() and not processes.active:  # no process-group backend
        return torch.device("mps")
    return torch.device("cpu")


def make_reproducible(seed, deterministic):
    torch.manual_seed(seed)  # CPU and every GPU
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)


class MixedPrecision:
    """bfloat16 (or float16 with a gradient scaler) on CUDA when enabled; plain float32 elsewhere.

    with precision.autocast():
        loss = ...
    precision.step(loss, optimizer)   # backward pass, then the optimizer's step
    """

    def __init__(self, device, enabled):
        dtype = None
        if enabled and device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.autocast = functools.partial(
            torch.autocast, device.type, dtype=dtype, enabled=dtype is not None
        )
        # float16 gradients can underflow; the scaler keeps them in range (bfloat16 needs none).
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step(self, loss, optimizer):
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
