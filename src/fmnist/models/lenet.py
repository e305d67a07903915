"""LeNet-5 (LeCun et al., 1998) adapted to 1x28x28: conv-pool-conv-pool-FC-FC-out."""

from __future__ import annotations

from torch import nn

from fmnist.models.base import Classifier
from fmnist.models.zoo import register_model


@register_model
def lenet(num_classes: int = 10) -> Classifier:
    """LeNet-5 shape: conv5(6)-pool-conv5(16)-pool-FC120-FC84-out, ReLU and max-pool instead of tanh/avg-pool."""
    features = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),  # padding 2 turns 28x28 into LeNet's 32x32 -> (N, 6, 28, 28)
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # (N, 6, 14, 14)
        nn.Conv2d(6, 16, 5),  # (N, 16, 10, 10)
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # (N, 16, 5, 5)
    )
    pre_logits = nn.Sequential(
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
        nn.Linear(120, 84), nn.ReLU(inplace=True),
    )
    return Classifier(features, pre_logits, nn.Linear(84, num_classes))
