"""The seed's baseline: flatten the 28x28 image to 784 numbers, then dense layers."""

from __future__ import annotations

from torch import nn

from fmnist.models.base import Classifier
from fmnist.models.zoo import register_model


@register_model
def mlp(hidden: "list[int] | tuple[int, ...]" = (128,), dropout: float = 0.0, num_classes: int = 10) -> Classifier:
    """MLP baseline: 784 flattened pixels -> dense ReLU layers -> 10 (no notion of neighbouring pixels)."""
    layers: list[nn.Module] = []
    width = 28 * 28
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    # features is the identity: the MLP sees pixels, not feature maps
    return Classifier(nn.Identity(), nn.Sequential(*layers), nn.Linear(width, num_classes))
