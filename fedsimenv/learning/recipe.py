"""A training recipe for local SGD: data augmentation, learning-rate schedule and weight decay.

The DWNP paper (Gao et al., Sec. 4.1) trains CIFAR and TinyImageNet models with SGD, momentum 0.9
and "a start learning rate 0.1"; the rest of its recipe is in its supplement (not available). The
options here are the usual ones for those datasets, chosen by whoever runs a reproduction:

* ``augmentation="crop-flip"``: a random crop of the image zero-padded by ``crop_padding`` pixels
  on each side (the crop has the image's own size) and a horizontal flip with probability 1/2, per
  sample, drawn from an injected ``torch.Generator`` (torchvision's ``RandomCrop(32, padding=4)`` +
  ``RandomHorizontalFlip()``, without torchvision). The datasets here are normalised when loaded, so
  the padding is 0 in the normalised space (the channel mean), where torchvision pads the raw image
  with black;
* ``lr_schedule``: ``"constant"``, ``"cosine"`` (``lr0 (1 + cos(pi t / T)) / 2`` over a phase of
  ``T`` rounds, ``t = 0 .. T - 1``) or ``"step"`` (``lr0 * gamma ** m``, ``m`` the number of
  ``milestones``, fractions of the phase, that ``t / T`` has reached);
* ``weight_decay``: L2 penalty added to the gradient (``torch.optim.SGD``'s ``weight_decay``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Augmentation = Literal["none", "crop-flip"]
LRSchedule = Literal["constant", "cosine", "step"]
AUGMENTATIONS: tuple[Augmentation, ...] = ("none", "crop-flip")
LR_SCHEDULES: tuple[LRSchedule, ...] = ("constant", "cosine", "step")


@dataclass(frozen=True)
class TrainingRecipe:
    """Augmentation, learning-rate schedule and weight decay of local SGD (defaults: none of them).

    Attributes:
        augmentation: ``"none"`` or ``"crop-flip"`` (random padded crop + horizontal flip).
        crop_padding: Pixels of zero padding on each side before the random crop.
        lr_schedule: ``"constant"``, ``"cosine"`` or ``"step"`` (over each phase of training).
        step_milestones: For ``"step"``: fractions of a phase at which the rate is multiplied by
            ``step_gamma``.
        step_gamma: For ``"step"``: the factor at each milestone.
        weight_decay: L2 weight decay of SGD.
    """

    augmentation: Augmentation = "none"
    crop_padding: int = 4
    lr_schedule: LRSchedule = "constant"
    step_milestones: tuple[float, ...] = (0.5, 0.75)
    step_gamma: float = 0.1
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(
                f"augmentation {self.augmentation!r} is unknown; allowed values: {', '.join(AUGMENTATIONS)}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule {self.lr_schedule!r} is unknown; allowed values: {', '.join(LR_SCHEDULES)}"
            )
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0 < self.step_gamma <= 1:
            raise ValueError(f"step_gamma must be in (0, 1], got {self.step_gamma}")
        if any(not 0 < m < 1 for m in self.step_milestones):
            raise ValueError(f"step_milestones must be fractions in (0, 1), got {self.step_milestones}")

    def learning_rate(self, base: float, step: int, total: int) -> float:
        """The rate of round ``step`` (0-based) of a phase of ``total`` rounds starting at ``base``."""
        return scheduled_learning_rate(
            base, self.lr_schedule, step, total, self.step_milestones, self.step_gamma
        )

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``x`` augmented as the recipe says (unchanged for ``"none"``)."""
        if self.augmentation == "none":
            return x
        return random_crop_flip(x, generator, self.crop_padding)


def scheduled_learning_rate(
    base: float,
    schedule: LRSchedule,
    step: int,
    total: int,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> float:
    """Learning rate of step ``step`` in ``[0, total)`` of a ``schedule`` starting at ``base``."""
    if total < 1 or not 0 <= step < total:
        raise ValueError(f"step must be in [0, total) with total >= 1, got step {step}, total {total}")
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * step / total))
    if schedule == "step":
        return base * gamma ** sum(step >= m * total for m in milestones)
    raise ValueError(f"lr_schedule {schedule!r} is unknown; allowed values: {', '.join(LR_SCHEDULES)}")


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Per sample of ``x`` (B, C, H, W): a random H x W crop of the image zero-padded by ``padding``
    on each side, then a horizontal flip with probability 1/2.

    The offsets (uniform in ``[0, 2 * padding]`` for rows and columns) and the flips are drawn from
    ``generator`` (on the CPU) in that order, so a seed fixes the result on any device.
    """
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip needs (B, C, H, W) images, got shape {tuple(x.shape)}")
    batch, _, height, width = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (batch, 2), generator=generator).to(x.device)
    flip = (torch.rand(batch, generator=generator) < 0.5).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, :1] + torch.arange(height, device=x.device)  # (B, H)
    cols = torch.arange(width, device=x.device).expand(batch, width)
    cols = torch.where(flip[:, None], width - 1 - cols, cols) + offsets[:, 1:]  # (B, W)
    picked = padded[
        torch.arange(batch, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]
    ]
    return picked.permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) -> (B, C, H, W)
