"""Mild data augmentation on tensors in memory: one random affine map per image, per batch.

A rotation, a zoom and a shift, drawn from their own generator (so the shuffling and the
dropout draw the same numbers with or without augmentation), applied with `grid_sample`
to a whole batch at once. Zeros fill in from outside the image: MNIST's background.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mnistbench.config import AugmentParams


def is_on(aug: AugmentParams) -> bool:
    return bool(aug.degrees or aug.translate or aug.scale)


def random_affine(images: torch.Tensor, aug: AugmentParams, generator: torch.Generator) -> torch.Tensor:
    """Images (n, c, h, w) in [0, 1], each rotated by up to ±degrees, zoomed by 1 ± scale, and
    shifted by up to ±translate of the image size along each axis."""
    n = len(images)

    def uniform(*shape: int) -> torch.Tensor:  # in [-1, 1)
        return torch.rand(*shape, generator=generator) * 2 - 1

    angle = uniform(n) * math.radians(aug.degrees)
    zoom = 1 + uniform(n) * aug.scale
    shift = uniform(n, 2) * aug.translate * 2  # affine_grid's coordinates span [-1, 1]: 2 per image
    # theta maps output coordinates to input coordinates, so a zoom by s divides by s.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos, -sin, shift[:, 0]], dim=1),
        torch.stack([sin, cos, shift[:, 1]], dim=1),
    ], dim=1).to(images)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
