"""AlexNet's ideas at 28x28: ReLU everywhere, a deeper conv stack, dropout in a wide classifier."""

from __future__ import annotations

from torch import nn

from fmnist.models.base import Classifier
from fmnist.models.zoo import register_model


@register_model
def alexnet(width: int = 32, hidden: int = 512, dropout: float = 0.5, num_classes: int = 10) -> Classifier:
    """AlexNet-style: 5 conv layers (large first kernel), 3 max-pools, dropout FC-FC-out; train with augmentation."""
    w = width
    features = nn.Sequential(
        nn.Conv2d(1, w, 5, padding=2), nn.ReLU(inplace=True),  # big first kernel, as AlexNet's 11x11
        nn.MaxPool2d(2),  # (N, w, 14, 14)
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # (N, 2w, 7, 7)
        nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(4 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # (N, 2w, 3, 3)
    )
    pre_logits = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(2 * w * 3 * 3, hidden), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
    )
    return Classifier(features, pre_logits, nn.Linear(hidden, num_classes))
