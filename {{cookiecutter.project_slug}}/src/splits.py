"""What src/data.py hands the rest of the project, and how training reads it.

A Dataset is three splits (train, val and an optional test set, whose targets may be unknown)
and `info`: what a model needs to be rebuilt later (class names, input shape, normalisation),
which train.py saves beside model.pt as model.json.

A split is a map-style torch Dataset that also has
    targets   (n,) tensor of class indices or values, or None when unlabelled
    ids       n names: what submission.csv calls each example
    take(i)   the examples at i (a slice or a tensor of positions), as a split of its own kind
and whose items are (input, target) pairs (target -1 when unlabelled). Two kinds:
    Split     tensors in memory (small data: small images, a table); batches are slices of them, on
              the GPU when it has room: no DataLoader needed.
    any other (e.g. data.py's image files) is read by a torch DataLoader with worker processes,
              example by example, so memory does not grow with the dataset.
The operations here (hold out a validation part, keep the first N, Batches) work for both.
"""

import hashlib
import signal
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader


@dataclass
class Split(torch.utils.data.Dataset):
    inputs: torch.Tensor  # (n, ...): one row per example
    targets: torch.Tensor | None = None  # (n,) class indices or values; None: unlabelled
    ids: list = field(default=None)  # what submission.csv calls each example (default: 0..n-1)

    def __post_init__(self):
        if self.ids is None:
            self.ids = [str(index) for index in range(len(self.inputs))]

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return self.inputs[index], -1 if self.targets is None else self.targets[index]

    def take(self, index):
        """The examples at `index` (a slice or a tensor of positions) as a new Split."""
        positions = range(len(self))[index] if isinstance(index, slice) else index.tolist()
        targets = None if self.targets is None else self.targets[index]
        return Split(self.inputs[index].contiguous(), targets, [self.ids[i] for i in positions])


@dataclass
class Dataset:
    train: torch.utils.data.Dataset  # splits, as the module's docstring says
    val: torch.utils.data.Dataset
    test: torch.utils.data.Dataset | None
    info: dict  # JSON-able: saved as model.json's "data" and handed back to data.load()


@dataclass(frozen=True)
class Fold:
    """The `index`-th (1 to `count`) of `count` folds of the labelled examples: k-fold
    cross-validation holds out each fold in turn (train.py --folds, --fold)."""

    count: int
    index: int


def hold_out(split, validation, seed, groups=None):
    """(rest, held out). validation: a fraction (a random share of the examples, at least one)
    or a Fold (that fold of `count`: stratified by class, so every fold has each class's share;
    plain for numeric targets; with `groups`, a group number per example, every group whole in
    one fold). The same for a given seed whatever else changes."""
    generator = torch.Generator().manual_seed(seed)
    if isinstance(validation, Fold):
        if groups is not None:
            numbers = group_fold_numbers(torch.as_tensor(groups), validation.count, generator)
        else:
            numbers = fold_numbers(split.targets, len(split), validation.count, generator)
        held = numbers == validation.index - 1
        return split.take(torch.nonzero(~held).flatten()), split.take(torch.nonzero(held).flatten())
    order = torch.randperm(len(split), generator=generator)
    count = min(max(1, round(len(split) * validation)), len(split) - 1)
    return split.take(order[count:].sort().values), split.take(order[:count].sort().values)


def fold_numbers(targets, size, count, generator):
    """Each of `size` examples' fold, 0 to count - 1: the examples of each class (all of them,
    for numeric or unknown targets) in a random order, dealt out in turn."""
    if targets is None or targets.is_floating_point():
        classes = torch.zeros(size, dtype=torch.long)
    else:
        classes = targets.cpu().long()
    order = torch.randperm(size, generator=generator)
    numbers = torch.empty(size, dtype=torch.long)
    # Sorting the shuffled examples by class (stably) keeps each class's random order; dealing
    # them out round-robin from there gives every fold its share of every class.
    by_class = order[torch.sort(classes[order], stable=True).indices]
    numbers[by_class] = torch.arange(size) % count
    return numbers


def group_fold_numbers(groups, count, generator):
    """Each example's fold, 0 to count - 1, every group whole in one fold: the groups, largest
    first (ties in a random order), each to the fold with the fewest examples so far."""
    _, group_of, sizes = torch.unique(groups, return_inverse=True, return_counts=True)
    order = torch.randperm(len(sizes), generator=generator)
    order = order[torch.sort(sizes[order], descending=True, stable=True).indices]
    filled, fold_of = [0] * count, torch.empty(len(sizes), dtype=torch.long)
    for position, size in zip(order.tolist(), sizes[order].tolist(), strict=True):
        fold = min(range(count), key=lambda k: (filled[k], k))
        fold_of[position] = fold
        filled[fold] += size
    return fold_of[group_of]


def identity(dataset):
    """A short text that changes when the examples or their order change (a checkpoint of
    other data is never resumed): the sizes and a digest of the targets and ids."""
    digest = hashlib.sha1()
    for split in (dataset.train, dataset.val):
        digest.update(split.targets.cpu().numpy().tobytes())
        digest.update("\n".join(split.ids).encode())
    sizes = f"{len(dataset.train)} train / {len(dataset.val)} val"
    return f"{sizes}, targets {digest.hexdigest()[:12]}"


def place(split, device):
    """An in-memory split on `device` when it has room for it (with margin), else pinned on
    the CPU, from where batches cross one by one, asynchronously. Other splits stay where they
    are: a DataLoader reads them."""
    if not isinstance(split, Split):
        return split
    tensors = [split.inputs] + ([] if split.targets is None else [split.targets])
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        if sum(t.nbytes for t in tensors) * 4 > free_bytes:
            device = None
    pin = device is None and torch.cuda.is_available()
    moved = [t.pin_memory() if pin else t.to(device or "cpu") for t in tensors]
    return Split(moved[0], moved[1] if len(moved) > 1 else None, split.ids)


class Seeded(torch.utils.data.Dataset):
    """A split whose example `(index, seed)` is drawn under that seed: random augmentation
    then depends on the example and the epoch only, not on which worker reads it or when, so a
    resumed epoch sees the same crops and flips as an uninterrupted one."""

    def __init__(self, split):
        self.split = split

    def __len__(self):
        return len(self.split)

    def __getitem__(self, key):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.split[index]


class BatchOrder:
    """A DataLoader's batch_sampler: the positions of each batch, in `order` (default: as
    stored), from batch number `start`; with `seed`, each as (position, its own seed). Batches
    sets them before each pass (the sampler runs in the training process)."""

    def __init__(self, length, batch_size):
        self.length, self.batch_size = length, batch_size
        self.reorder()

    def reorder(self, order=None, start=0, seed=None):
        self.order = range(self.length) if order is None else order.tolist()
        self.start, self.seed = start, seed

    def __len__(self):
        return max(0, -(-self.length // self.batch_size) - self.start)

    def __iter__(self):
        for first in range(self.start * self.batch_size, self.length, self.batch_size):
            positions = self.order[first : first + self.batch_size]
            if self.seed is None:
                yield positions
            else:  # Python hashes tuples of ints alike in every process and run
                yield [(i, hash((self.seed, i)) & 0x7FFF_FFFF_FFFF) for i in positions]


def quiet_worker(_worker_id):
    """A stop is the training process's to handle: Ctrl-C, which a terminal sends to its whole
    process group, must not end the DataLoader's workers while it saves a checkpoint. (SIGTERM
    stays: the DataLoader ends workers that linger with it, and SageMaker's stop reaches
    train.py alone, through container_entry.py.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Batches:
    """The mini-batches of one split, as (inputs, targets) on `device`, for a whole run:

        train_batches = Batches(dataset.train, 128, device, workers=2, seeded=True)
        for inputs, targets in train_batches(order, start, seed): ...   # each epoch

    An in-memory Split is sliced (no workers, no per-example work). Any other split is read by
    one DataLoader whose `workers` persist from epoch to epoch, with pinned memory on CUDA;
    `seeded` (training): every example is drawn under a seed of its own (Seeded).
    """

    def __init__(self, split, batch_size, device, workers=0, seeded=False):
        self.split, self.batch_size, self.device = split, batch_size, torch.device(device)
        self.loader = None
        if not isinstance(split, Split):
            self.order = BatchOrder(len(split), batch_size)
            self.loader = DataLoader(
                Seeded(split) if seeded else split,
                batch_sampler=self.order,
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                worker_init_fn=quiet_worker if workers else None,
                persistent_workers=workers > 0,
            )

    def __call__(self, order=None, start=0, seed=None):
        """Yield the batches in `order` (default: as stored) from batch number `start`; floating
        inputs come as float32."""
        if self.loader is None:
            yield from tensor_batches(self.split, self.batch_size, self.device, order, start)
            return
        self.order.reorder(order, start, seed)
        for inputs, targets in self.loader:
            inputs = inputs.to(self.device, non_blocking=True)
            yield inputs.float(), targets.to(self.device, non_blocking=True)


def batches(split, batch_size, device, workers=0):
    """The batches of a split once, in stored order (e.g. to predict it)."""
    yield from Batches(split, batch_size, device, workers)()


def tensor_batches(split, batch_size, device, order, start):
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
