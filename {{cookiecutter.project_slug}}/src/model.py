"""YOUR MODEL: replace this file (and src/data.py) to train on your own problem.

The rest of the project asks this file for `build(info, config)` only: the network for the data
that data.py describes in `info` (here its input shape and classes), sized by the hyperparameters
in `config` (train.py's options: here --width). predict.py rebuilds a saved model the same way,
from the info and options saved beside it in model.json.

The example: a small CNN (29,178 parameters for 1x28x28 inputs and 10 classes). Three blocks of
3x3 convolution -> 2x2 max-pool -> batch norm -> ReLU (16, 32, 64 channels: 28 -> 14 -> 7 -> 3
pixels), then one linear layer. Pooling before normalising does the same job on a quarter of the
pixels, and batch norm lets a large learning rate converge fast: about 95% on the synthetic set
after one epoch (some of its digits are hard to read) and 99%+ on real MNIST, at roughly 1/6 of
the compute of PyTorch's classic example.
"""

import torch
from torch import nn


def build(info, config):
    channels, height, width = info["input_shape"]
    net = Net(channels, (height // 8) * (width // 8), len(info["classes"]), config.width)
    # channels-last memory suits CPU (oneDNN) and GPU (tensor cores) convolutions best.
    return net.to(memory_format=torch.channels_last)


def conv_block(in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Net(nn.Module):
    def __init__(self, channels, pooled_pixels, num_classes, width=16):
        super().__init__()
        self.features = nn.Sequential(
            conv_block(channels, width),
            conv_block(width, 2 * width),
            conv_block(2 * width, 4 * width),
        )
        self.classifier = nn.Linear(4 * width * pooled_pixels, num_classes)

    def forward(self, images):
        """images: (batch, channels, height, width) normalised floats -> (batch, classes) logits."""
        return self.classifier(self.features(images).flatten(1))
