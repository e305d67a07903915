"""The shipped default: a small, fast CNN (two conv blocks, one hidden layer, ~0.4 M parameters)."""

from __future__ import annotations

from torch import nn

from fmnist.models.base import Classifier, conv_bn_relu
from fmnist.models.registry import register_model


@register_model
def smallcnn(width: int = 32, hidden: int = 128, dropout: float = 0.3, num_classes: int = 10) -> Classifier:
    """Small fast CNN: conv3(32)-BN-pool, conv3(64)-BN-pool, FC128, out; the shipped default model."""
    features = nn.Sequential(
        *conv_bn_relu(1, width), nn.MaxPool2d(2),  # (N, 32, 14, 14)
        *conv_bn_relu(width, 2 * width), nn.MaxPool2d(2),  # (N, 64, 7, 7)
    )
    pre_logits = nn.Sequential(
        nn.Dropout(dropout / 2),
        nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )
    return Classifier(features, pre_logits, nn.Linear(hidden, num_classes))
