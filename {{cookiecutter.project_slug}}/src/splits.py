"""What src/data.py hands the rest of the project, and what the rest does with it.

A Dataset is three Splits of model-ready tensors (train, val and an optional test set, whose
targets may be unknown) and `info`: what a model needs to be rebuilt later (class names, input
shape, normalisation), which train.py saves beside model.pt as model.json. The operations here
(hold out a validation part, keep the first N, shard, batch) work the same for any problem.
"""

import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class Split:
    inputs: torch.Tensor  # (n, ...): one row per example
    targets: torch.Tensor | None = None  # (n,) class indices or values; None: unlabelled
    ids: list = field(default=None)  # what submission.csv calls each example (default: 0..n-1)

    def __post_init__(self):
        if self.ids is None:
            self.ids = [str(index) for index in range(len(self.inputs))]

    def __len__(self):
        return len(self.inputs)

    def take(self, index):
        """The examples at `index` (a slice or a tensor of positions) as a new Split."""
        positions = range(len(self))[index] if isinstance(index, slice) else index.tolist()
        targets = None if self.targets is None else self.targets[index]
        return Split(self.inputs[index].contiguous(), targets, [self.ids[i] for i in positions])


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split | None
    info: dict  # JSON-able: saved as model.json's "data" and handed back to data.load()


def hold_out(split, fraction, seed):
    """(rest, held out): a random `fraction` of the examples (at least one), the same for a
    given seed whatever else changes."""
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    count = min(max(1, round(len(split) * fraction)), len(split) - 1)
    return split.take(order[count:].sort().values), split.take(order[:count].sort().values)


def identity(dataset):
    """A short text that changes when the examples or their order change (a checkpoint of
    other data is never resumed): the sizes and a digest of the targets."""
    digest = hashlib.sha1()
    for split in (dataset.train, dataset.val):
        digest.update(split.targets.cpu().numpy().tobytes())
    sizes = f"{len(dataset.train)} train / {len(dataset.val)} val"
    return f"{sizes}, targets {digest.hexdigest()[:12]}"


def place(split, device):
    """The split on `device` when it has room for it (with margin), else pinned on the CPU,
    from where batches cross one by one, asynchronously."""
    tensors = [split.inputs] + ([] if split.targets is None else [split.targets])
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        if sum(t.nbytes for t in tensors) * 4 > free_bytes:
            device = None
    moved = [t.pin_memory() if device is None else t.to(device) for t in tensors]
    return Split(moved[0], moved[1] if len(moved) > 1 else None, split.ids)


def batches(split, batch_size, device, order=None, start=0):
    """Yield (inputs, targets) mini-batches on `device` in `order` (default: as stored),
    beginning with batch number `start`; floating inputs come as float32.

    Slicing tensors already in memory replaces a DataLoader: no workers, no per-example work.
    """
    if order is not None:
        order = order.to(split.inputs.device)  # where the examples are (GPU, or pinned CPU)
    for first in range(start * batch_size, len(split), batch_size):
        index = (
            slice(first, first + batch_size) if order is None else order[first : first + batch_size]
        )
        inputs = split.inputs[index].to(device, non_blocking=True)
        targets = (
            None if split.targets is None else split.targets[index].to(device, non_blocking=True)
        )
        yield (inputs.float() if inputs.is_floating_point() else inputs), targets
