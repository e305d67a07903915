"""Build any model by name: `register_model`, `list_models`, `create_model`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fmnist.errors import UnknownName

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: the builder's name is the model's name; its docstring's first line describes it."""
    _REGISTRY[fn.__name__] = fn
    _DESCRIPTIONS[fn.__name__] = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def describe_models() -> dict[str, str]:
    return {name: _DESCRIPTIONS[name] for name in list_models()}


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; an unknown name or argument says what is known."""
    if name not in _REGISTRY:
        raise UnknownName(f"unknown model {name!r}: known models are {', '.join(list_models())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:
        raise TypeError(f"bad arguments for model {name!r}: {e}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape=(1, 1, 28, 28)) -> int:
    """FLOPs of one forward pass for one image, counting a multiply-add as 2 FLOPs.

    Conv and Linear layers only (they are >99 % of the work here); measured with forward hooks
    so any architecture is covered without hand-written formulas.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += 2 * out.numel() * k // out.shape[0]

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += 2 * m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total
