"""Augmentation on whole batches of normalised tensors (no per-image Python loop: CPU-friendly).

The picture mix swaps images for their pre-rendered picture round trips (training/bank.py); the
rest (crop, flip, elastic, erasing) works on the batch as tensors.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as nn_f


def random_crop(x: torch.Tensor, padding: int, fill: float, gen: torch.Generator) -> torch.Tensor:
    """Pad by `padding` with `fill` (the normalised background), crop back at a random offset."""
    n, c, h, w = x.shape
    padded = torch.full((n, c, h + 2 * padding, w + 2 * padding), fill, dtype=x.dtype, device=x.device)
    padded[:, :, padding : padding + h, padding : padding + w] = x
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]  # (N, C, H, W)


def random_hflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=gen) < p).to(x.device)[:, None, None, None]
    return torch.where(flip, x.flip(-1), x)


def random_erasing(
    x: torch.Tensor, gen: torch.Generator, p: float = 0.5, scale=(0.02, 0.2), ratio=(0.3, 3.3)
) -> torch.Tensor:
    """Zhong et al. 2017: blank a random rectangle of each chosen image with random values."""
    n, c, h, w = x.shape
    area = h * w * torch.empty(n).uniform_(*scale, generator=gen)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    r = torch.exp(log_r)
    eh = torch.sqrt(area * r).round().clamp(1, h).long()
    ew = torch.sqrt(area / r).round().clamp(1, w).long()
    y0 = (torch.rand(n, generator=gen) * (h - eh + 1)).long()
    x0 = (torch.rand(n, generator=gen) * (w - ew + 1)).long()
    ys = torch.arange(h)[None, :]
    xs = torch.arange(w)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])  # (N, H)
    in_x = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])  # (N, W)
    chosen = torch.rand(n, generator=gen) < p
    mask = (in_y[:, :, None] & in_x[:, None, :] & chosen[:, None, None])[:, None].to(x.device)  # (N,1,H,W)
    noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    return torch.where(mask, noise, x)


def random_elastic(x: torch.Tensor, fill: float, gen: torch.Generator, p: float = 0.3, pixels: float = 1.5
                   ) -> torch.Tensor:
    """Smooth random warps (a 5x5 grid of displacements of ~`pixels` px, bicubic-upsampled) of chosen images."""
    n, c, h, w = x.shape
    coarse = torch.randn((n, 2, 5, 5), generator=gen) * (2.0 * pixels / w)  # grid units: 2 / width per pixel
    disp = nn_f.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    chosen = (torch.rand(n, generator=gen) < p)[:, None, None, None]
    base = nn_f.affine_grid(torch.eye(2, 3).expand(n, 2, 3), (n, c, h, w), align_corners=False)
    grid = (base + disp * chosen).to(x.device, x.dtype)
    return nn_f.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


class Augment:
    """The training-time augmentation pipeline chosen in TrainConfig.

    bank: uint8 (variants, N, 28, 28) picture round trips of the N training images; with probability
    `pictures` an image is replaced by one of its round trips (normalised like the clean images).
    """

    def __init__(self, crop_padding: int, hflip: bool, erasing: float, fill: float, seed: int,
                 pictures: float = 0.0, bank: "torch.Tensor | None" = None, normalize=None, elastic: float = 0.0):
        self.crop_padding, self.hflip, self.erasing, self.fill = crop_padding, hflip, erasing, fill
        self.pictures, self.bank, self.normalize, self.elastic = pictures, bank, normalize, elastic
        if pictures and (bank is None or normalize is None):
            raise ValueError("the picture mix needs the picture bank and the normalisation")
        self.gen = torch.Generator().manual_seed(seed)

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.hflip or self.erasing or self.pictures or self.elastic)

    def mix_pictures(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        n = len(idx)
        swap = torch.rand(n, generator=self.gen) < self.pictures
        variant = torch.randint(0, self.bank.shape[0], (n,), generator=self.gen)
        if not swap.any():
            return x
        pics = self.normalize(self.bank[variant[swap], idx[swap]]).to(x.device, x.dtype)
        x = x.clone()
        x[swap.to(x.device)] = pics
        return x

    def __call__(self, x: torch.Tensor, idx: "torch.Tensor | None" = None) -> torch.Tensor:
        if self.pictures and idx is not None:
            x = self.mix_pictures(x, idx)
        if self.elastic:
            x = random_elastic(x, self.fill, self.gen, p=self.elastic)
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, self.fill, self.gen)
        if self.hflip:
            x = random_hflip(x, self.gen)
        if self.erasing:
            x = random_erasing(x, self.gen, p=self.erasing)
        return x
