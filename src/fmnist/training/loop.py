"""One training epoch and one evaluation pass: plain functions over a model and tensors."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_one_epoch(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loss_fn: Callable,
    batch_size: int,
    gen: torch.Generator,
    augment: "Callable | None" = None,
    device: torch.device = torch.device("cpu"),  # noqa: B008 (an immutable value)
    precision: str = "fp32",
    memory_format=torch.contiguous_format,
    progress=None,
    outliers: "tuple | None" = None,
    garments: "tuple | None" = None,
) -> tuple[float, float]:
    """Shuffle, augment, step; returns (mean loss, accuracy) over the epoch's training batches.

    outliers: (pool (M, 1, 28, 28) normalised non-garment pictures, k, weight): k of them, drawn at random
    and augmented, join every batch with a uniform target (outlier exposure: -weight x mean log-softmax).
    garments: (pool (G, 1, 28, 28) normalised labelled pictures, labels (G,), k): k of them, drawn at random and
    augmented, join every batch with their labels; the loss is the mean over the batch's images and them."""
    model.train()
    order = torch.randperm(len(images), generator=gen)
    total_loss, correct, seen = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = images[idx]
        y = labels[idx].to(device)
        if augment is not None:
            x = augment(x, idx)
        n = len(idx)
        kg = 0
        if garments is not None:
            gpool, glabels, kg = garments
            pick = torch.randint(0, len(gpool), (kg,), generator=gen).to(gpool.device)
            g = gpool[pick]
            x = torch.cat([x, (augment(g, None) if augment is not None else g).to(x.device)])
            gy = glabels[pick].to(device)
        if outliers is not None:
            pool, k, weight = outliers
            o = pool[torch.randint(0, len(pool), (k,), generator=gen).to(pool.device)]
            x = torch.cat([x, (augment(o, None) if augment is not None else o).to(x.device)])
        x = x.to(device).contiguous(memory_format=memory_format)
        with autocast(device, precision):
            logits = model(x)
            loss = loss_fn(logits[:n].float(), y, idx)
            if kg:
                ce = nn.functional.cross_entropy(logits[n:n + kg].float(), gy, label_smoothing=loss_fn.ce.label_smoothing)
                loss = (loss * n + ce * kg) / (n + kg)
            if outliers is not None:
                loss = loss - weight * torch.log_softmax(logits[n + kg:].float(), dim=1).mean()
            logits = logits[:n]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        if progress is not None:
            progress.update(n)
            progress.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
    return total_loss / seen, correct / seen


class Loss:
    """Cross-entropy with label smoothing, plus knowledge distillation when a teacher's logits are given.

    teacher_logits: (N, 10) logits of a larger model on the N clean training images, looked up by the
    batch's indices: a picture round trip of image i is taught what the teacher says of image i (Hinton
    et al. 2015: KL divergence at temperature T, scaled by T^2, weight alpha).
    """

    def __init__(self, label_smoothing: float = 0.0, teacher_logits: "torch.Tensor | None" = None,
                 alpha: float = 0.5, temperature: float = 4.0):
        self.ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.teacher, self.alpha, self.t = teacher_logits, alpha, temperature

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, idx: "torch.Tensor | None" = None) -> torch.Tensor:
        hard = self.ce(logits, y)
        if self.teacher is None or idx is None:
            return hard
        soft = nn.functional.softmax(self.teacher[idx].to(logits.device) / self.t, dim=1)
        kd = nn.functional.kl_div(nn.functional.log_softmax(logits / self.t, dim=1), soft, reduction="batchmean")
        return (1 - self.alpha) * hard + self.alpha * (self.t ** 2) * kd


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device = torch.device("cpu"),  # noqa: B008 (an immutable value)
    precision: str = "fp32",
    memory_format=torch.contiguous_format,
) -> np.ndarray:
    """Logits (N, 10) as float32 NumPy, in eval mode."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).contiguous(memory_format=memory_format)
        with autocast(device, precision):
            out.append(model(x).float().cpu())
    return torch.cat(out).numpy()


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Plain cross-entropy (no smoothing) and accuracy of precomputed logits."""
    t = torch.from_numpy(logits)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return float(nn.functional.cross_entropy(t, y)), float((t.argmax(1) == y).float().mean())
