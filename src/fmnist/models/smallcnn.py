"""The shipped default: a small, fast CNN (two conv blocks, one hidden layer, ~0.4 M parameters)."""

from __future__ import annotations

from torch import nn

from fmnist.errors import InvalidValue
from fmnist.models.base import Classifier, conv_bn_relu
from fmnist.models.zoo import register_model


@register_model
def smallcnn(width: int = 32, hidden: int = 128, dropout: float = 0.3, num_classes: int = 10,
             blocks: int = 2) -> Classifier:
    """Small fast CNN: conv3(32)-BN-pool, conv3(64)-BN-pool, FC128, out; the shipped default model.

    blocks=3 adds a third conv-BN-pool block (channels doubling again; 7x7 -> 3x3): with width=24 about
    the same FLOPs as the two-block default, with a receptive field that covers the whole garment.
    """
    if blocks not in (2, 3):
        raise InvalidValue(f"smallcnn blocks must be 2 or 3, got {blocks}")
    layers = [*conv_bn_relu(1, width), nn.MaxPool2d(2),  # (N, w, 14, 14)
              *conv_bn_relu(width, 2 * width), nn.MaxPool2d(2)]  # (N, 2w, 7, 7)
    side, channels = 7, 2 * width
    if blocks == 3:
        layers += [*conv_bn_relu(2 * width, 4 * width), nn.MaxPool2d(2)]  # (N, 4w, 3, 3)
        side, channels = 3, 4 * width
    features = nn.Sequential(*layers)
    pre_logits = nn.Sequential(
        nn.Dropout(dropout / 2),
        nn.Linear(channels * side * side, hidden), nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )
    return Classifier(features, pre_logits, nn.Linear(hidden, num_classes))
