"""The shape every model shares: features -> flatten -> classifier, with the penultimate layer exposed."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """`features` (conv stack or identity) -> flatten -> `pre_logits` (all but the last layer) -> `head`.

    `forward_features` returns the penultimate activations (N, D): what drift statistics and
    visualisations use; `forward_head` maps them to logits (N, 10).
    """

    def __init__(self, features: nn.Module, pre_logits: nn.Module, head: nn.Linear):
        super().__init__()
        self.features = features
        self.pre_logits = pre_logits
        self.head = head

    @property
    def num_features(self) -> int:
        return self.head.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C, H, W) for CNNs, unchanged for the MLP
        x = torch.flatten(x, 1)  # (N, C*H*W)
        return self.pre_logits(x)  # (N, D)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)  # (N, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def conv_bn_relu(c_in: int, c_out: int, batch_norm: bool = True) -> list[nn.Module]:
    """3x3 'same' convolution, optional batch norm, ReLU (bias is redundant before BN)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers
