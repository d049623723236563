"""YOUR MODEL: replace this file (and src/data.py) to train on your own problem.

The rest of the project asks this file for `build(info, config)` only: the network for the data
that data.py describes in `info` (its classes, image size, backbone), sized by the
hyperparameters in `config` (train.py's options). predict.py rebuilds a saved model the same
way, from the info and options saved beside it in model.json.

The example: a backbone that turns an image into features, and a new linear head sized for the
data's classes. --backbone cnn is a small CNN trained from scratch (offline: the synthetic
walkthrough); the others are torchvision's classification networks, with ImageNet weights
when --pretrained (downloaded once into torch's cache, ~/.cache/torch or $TORCH_HOME).
train.py gives the backbone --backbone-lr-scale times the head's learning rate and freezes it
for the first --freeze-epochs epochs (`frozen`: no gradients, batch-norm statistics kept).
"""

import torch
from torch import nn
from torchvision import models


def build(info, config):
    """With info["pretrained"], the backbone starts from torchvision's default weights."""
    name = info["backbone"]
    if name == "cnn":
        backbone, features = small_cnn(info["input_shape"], config.width)
    else:
        backbone = models.get_model(name, weights="DEFAULT" if info["pretrained"] else None)
        features = replace_head(backbone)
    net = Classifier(backbone, nn.Linear(features, len(info["classes"])))
    # channels-last memory suits CPU (oneDNN) and GPU (tensor cores) convolutions best.
    return net.to(memory_format=torch.channels_last)


def replace_head(network):
    """Swap the network's last linear layer (its ImageNet classifier) for nn.Identity; return
    how many features it took."""
    parent, name, layer = None, None, None
    for module in network.modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                parent, name, layer = module, child_name, child
    setattr(parent, name, nn.Identity())
    return layer.in_features


def small_cnn(input_shape, width):
    """Three blocks of 3x3 convolution -> 2x2 max-pool -> batch norm -> ReLU (width, 2 width,
    4 width channels), flattened: (network, its number of features). Pooling before
    normalising does the same job on a quarter of the pixels."""
    channels, height, image_width = input_shape

    def block(in_channels, out_channels):
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    layers = [block(channels, width), block(width, 2 * width), block(2 * width, 4 * width)]
    features = 4 * width * (height // 8) * (image_width // 8)
    return nn.Sequential(*layers, nn.Flatten()), features


class Classifier(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.frozen = False

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its batch-norm statistics
            self.backbone.eval()
        return self

    def forward(self, images):
        """images: (batch, 3, height, width) normalised floats -> (batch, classes) logits."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            features = self.backbone(images)
        return self.head(features)


def param_groups(model, config):
    """The optimizer's parameter groups: the backbone at --backbone-lr-scale times --lr, the
    head at --lr."""
    return [
        {"params": model.backbone.parameters(), "lr": config.lr * config.backbone_lr_scale},
        {"params": model.head.parameters(), "lr": config.lr},
    ]
