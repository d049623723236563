"""Data-parallel training when torchrun starts train.py; in a single process, every helper here
does nothing.

torchrun (what SageMaker's Torchrun driver runs: one process per GPU on every host) sets RANK,
LOCAL_RANK and WORLD_SIZE. Each process trains on its own shard of the data, and
DistributedDataParallel averages the gradients after every backward pass, so all processes keep
the same weights. Metrics are summed over the processes; only rank 0 prints and writes files.
"""

import gc
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    local_rank: int = 0  # which GPU of this host
    world_size: int = 1

    @property
    def active(self):
        return self.world_size > 1

    @property
    def main(self):
        """Rank 0: the one process that prints and writes."""
        return self.rank == 0


def started_by_torchrun():
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup():
    """Join the process group torchrun set up (NCCL between GPUs, Gloo on CPUs), if any."""
    if not started_by_torchrun():
        return Processes()
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Processes(dist.get_rank(), local_rank, dist.get_world_size())


def cleanup(processes):
    if processes.active and dist.is_initialized():
        # DistributedDataParallel's reference cycles keep the process group alive until the
        # garbage collector runs: collected first, destroying it joins Gloo's threads now, not
        # at interpreter exit (where they could abort the process; see exit_after).
        gc.collect()
        dist.destroy_process_group()


def exit_after(main):
    """Run main() and end the process with its exit status (main may raise SystemExit).

    Started by torchrun, the process ends without the interpreter's teardown (os._exit): torch's
    process-group threads can still hold Python objects there and abort a process whose run had
    finished and saved everything (SIGABRT, "terminate called without an active exception": rare
    under load, and then torchrun reports the whole run as failed; pytorch/pytorch#179291).
    By then the process group is destroyed and the tracking process has finished; this flushes
    what is left to print.
    """
    if not started_by_torchrun():
        return main()
    try:
        main()
        status = 0
    except SystemExit as exiting:
        status = exiting.code
    if isinstance(status, str):  # sys.exit("error: ...")
        print(status, file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status or 0)


def shard(split, processes, same_length=False):
    """This process's share of a Split: every world_size-th example, from its rank on.

    same_length: cut up to world_size - 1 examples so that every process gets as many (for
    training, where the processes take their steps together).
    """
    if not processes.active:
        return split
    end = len(split) // processes.world_size * processes.world_size if same_length else None
    return split.take(slice(processes.rank, end, processes.world_size))


def wrap(model, processes, find_unused_parameters=False):
    """The model in DistributedDataParallel, which averages gradients over the processes."""
    if not processes.active:
        return model
    device_ids = [processes.local_rank] if torch.cuda.is_available() else None
    return DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def total(tensor, processes):
    """The sum of this tensor over all processes (every process must call it)."""
    if processes.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_any(flags, processes, device):
    """For each flag, whether any process set it (every process must call it, at the same step)."""
    if not processes.active:
        return [bool(flag) for flag in flags]
    counts = total(torch.tensor([int(bool(flag)) for flag in flags], device=device), processes)
    return [bool(count) for count in counts.tolist()]


def broadcast_from_rank0(value, processes):
    """Rank 0's value (e.g. the checkpoint it read), in every process."""
    if not processes.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def same_buffers(model, processes):
    """Rank 0's batch-norm statistics everywhere, so every shard is evaluated with the saved
    model (DistributedDataParallel syncs them before each step, not after the last one)."""
    if processes.active:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def gather_objects(items, processes):
    """Every process's list, concatenated in rank order (as gather's tensors), in every process."""
    if not processes.active:
        return list(items)
    pieces = [None] * processes.world_size
    dist.all_gather_object(pieces, list(items))
    return [item for piece in pieces for item in piece]


def gather(tensor, processes):
    """Every process's tensor, concatenated along the first dimension, in every process (every
    process must call it; the shards may differ in length)."""
    if not processes.active:
        return tensor
    pieces = [None] * processes.world_size
    dist.all_gather_object(pieces, tensor.cpu())
    return torch.cat(pieces).to(tensor.device)
