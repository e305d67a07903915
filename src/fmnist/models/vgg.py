"""VGG (Simonyan & Zisserman, 2014) at 28x28: blocks of stacked 3x3 convs + max-pool, built from a config list."""

from __future__ import annotations

from torch import nn

from fmnist.errors import InvalidValue
from fmnist.models.base import Classifier, conv_bn_relu
from fmnist.models.zoo import register_model

# Architecture as data: an int is a 3x3 conv with that many channels, "M" a 2x2 max-pool.
CFGS: dict[str, list] = {
    "S": [32, 32, "M", 64, 64, "M", 128, 128, "M"],  # 3 blocks of 2 convs: fits a CPU budget
    "M": [64, 64, "M", 128, 128, "M", 256, 256, "M"],
    "L": [64, 64, "M", 128, 128, 128, "M", 256, 256, 256, "M"],
}


def make_layers(cfg: list, batch_norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 1
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += conv_bn_relu(c_in, int(v), batch_norm)
            c_in = int(v)
    return nn.Sequential(*layers)


@register_model
def vgg(cfg: str = "S", batch_norm: bool = True, hidden: int = 256, dropout: float = 0.5, num_classes: int = 10) -> Classifier:
    """VGG-style: 3x3 conv blocks + max-pool from a config list (S/M/L), optional batch norm, dropout FC head."""
    if cfg not in CFGS:
        raise InvalidValue(f"unknown VGG config {cfg!r}: expected one of {', '.join(CFGS)}")
    layers = CFGS[cfg]
    features = make_layers(layers, batch_norm)
    pools = layers.count("M")
    side = 28 >> pools  # 28 -> 14 -> 7 -> 3
    channels = [v for v in layers if v != "M"][-1]
    pre_logits = nn.Sequential(
        nn.Linear(channels * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
    )
    return Classifier(features, pre_logits, nn.Linear(hidden, num_classes))
