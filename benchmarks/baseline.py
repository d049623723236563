"""The baseline: the classic pytorch/examples MNIST recipe, on a dataset folder of our choosing.

    python benchmarks/baseline.py --data-dir DIR [--epochs 1]

It follows https://github.com/pytorch/examples/blob/main/mnist/main.py: every image goes through
PIL -> ToTensor -> Normalize one sample at a time in a DataLoader, the two-conv 9216->128 CNN with
dropout, Adadelta (lr 1.0) with StepLR (gamma 0.7), batch 64, test batch 1000, seed 1. The only
changes: it reads an existing folder (download=False), prints no per-batch progress, and prints
the rendered train.py's epoch line, so the benchmark parses both the same way.
"""

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.optim.lr_scheduler import StepLR
from torchvision import datasets, transforms


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def train_epoch(model, device, loader, optimizer):
    model.train()
    total_loss = 0.0
    for data, target in loader:
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(data)
    return total_loss / len(loader.dataset)


def evaluate(model, device, loader):
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            total_loss += F.nll_loss(output, target, reduction="sum").item()
            correct += output.argmax(dim=1).eq(target).sum().item()
    return total_loss / len(loader.dataset), correct / len(loader.dataset)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding MNIST/raw/")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training set")
    parser.add_argument("--seed", type=int, default=1, help="random seed (the example's default)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    cuda_kwargs = {"num_workers": 1, "pin_memory": True} if use_cuda else {}
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    train_set = datasets.MNIST(args.data_dir, train=True, download=False, transform=transform)
    test_set = datasets.MNIST(args.data_dir, train=False, download=False, transform=transform)
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=64, shuffle=True, **cuda_kwargs
    )
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000, **cuda_kwargs)

    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, args.epochs + 1):
        train_loss = train_epoch(model, device, train_loader, optimizer)
        test_loss, test_accuracy = evaluate(model, device, test_loader)
        scheduler.step()
        print(
            f"epoch={epoch} train_loss={train_loss:.4f} test_loss={test_loss:.4f} "
            f"test_accuracy={test_accuracy:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
