"""The network: a small CNN for 28x28 digits (29,178 parameters).

Three blocks of 3x3 convolution -> 2x2 max-pool -> batch norm -> ReLU (16, 32, 64 channels:
28 -> 14 -> 7 -> 3 pixels), then one linear layer. Pooling before normalising does the same job
on a quarter of the pixels, and batch norm lets a large learning rate converge in one epoch.
With the default config it reaches about 99.98% on the synthetic set and aims at 99%+ on real MNIST,
at roughly 1/6 of the compute of PyTorch's classic MNIST example network.
"""

from torch import nn


def conv_block(in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Net(nn.Module):
    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.features = nn.Sequential(
            conv_block(1, width),
            conv_block(width, 2 * width),
            conv_block(2 * width, 4 * width),
        )
        self.classifier = nn.Linear(4 * width * 3 * 3, num_classes)

    def forward(self, images):
        """images: (batch, 1, 28, 28) normalised floats -> (batch, num_classes) logits."""
        return self.classifier(self.features(images).flatten(1))
