"""Achieved training GFLOP/s of the cohort step against the machine's fp32 GEMM peak, same run.

Peak: square fp32 ``torch.mm`` of the size that runs fastest here (1024, 2048 or 3072; 2 n^3 FLOPs),
with torch's threads as configured. Cohort step: one local epoch of 8 devices x 32 samples (one step
each), ResNet-20 without norm layers on CIFAR-shaped synthetic data (3x32x32), through the path
``cohort: auto`` picks for it (:func:`fedsimenv.learning.cohort.prefer_batched`); the small CNN on
digits (batch 16, 50 devices, batched) for contrast: its steps are too small to be compute-bound.
Training FLOPs are counted as 3x the exact forward FLOPs (forward, then gradients with respect to the
inputs and to the weights, each as costly as the forward), the usual convention; element-wise work
(ReLU, pooling, the optimiser) is not counted. Peak and cohort step alternate repeat by repeat and the
efficiency is formed repeat by repeat.

Compute floor (:class:`ComputeFloor`): the least time some training work can take here, its dense
training FLOPs (3x forward, the count above) at the GEMM peak measured in the same process and at
the same thread count; ``bench.env_steps --phases`` and ``bench.fedavg_round`` print it for a real
env step and a FedAvg round, with the best steps/s or speed-up ratio it allows.

    python -m bench.compute [--repeats 5]
    python -m bench.compute --steps-only 400     # the small-CNN step alone, for perf record
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import torch

from bench.report import Collected, Figure, Ratio, Report, figure, machine_description
from fedsimenv.learning.cohort import (
    LocalJob,
    SGDConfig,
    draw_orders,
    prefer_batched,
    train_batched,
    train_sequential,
)
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.models import build_model

SECTION = "Compute efficiency (fp32)"
#: Square sizes tried for the peak of :func:`gemm_peak_gflops` (one thread: 1024 is already at it).
PEAK_SIZES = (1024, 2048)


def _gflops(flops: float, call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return flops / (time.perf_counter() - start) / 1e9


def gemm_size(candidates: tuple[int, ...] = (1024, 2048, 3072)) -> int:
    """The matrix size at which ``torch.mm`` runs fastest here (the peak is taken at that size)."""
    best, best_rate = candidates[0], 0.0
    for n in candidates:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        rate = max(_gflops(2 * n**3, partial(torch.mm, a, b)) for _ in range(3))
        if rate > best_rate:
            best, best_rate = n, rate
    return best


def gemm_peak_gflops(repeats: int = 5, sizes: tuple[int, ...] = PEAK_SIZES) -> float:
    """The fp32 GEMM peak at torch's current thread count: the best ``torch.mm`` rate over ``sizes``
    and ``repeats`` (best, not median: the floor is what the machine can do, not what it did)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        best = max(best, *(_gflops(2 * n**3, partial(torch.mm, a, b)) for _ in range(repeats)))
    return best


def training_flops(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    samples: int,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> float:
    """Training FLOPs of ``samples`` sample passes (forward + backward = 3x the exact forward FLOPs of
    the conv and linear layers); with ``masks``, only the kept weights (what a sparse kernel would do;
    the soft-masked training here runs dense)."""
    return 3 * forward_flops_per_sample(model, input_shape, masks) * samples


@dataclass(frozen=True)
class ComputeFloor:
    """The least time ``flops`` of fp32 work take at ``peak_gflops``: no schedule, kernel or
    framework can do it faster on this machine at this thread count (short of skipping work).

    Attributes:
        flops: The work, FLOPs.
        peak_gflops: The measured GEMM peak (:func:`gemm_peak_gflops`).
    """

    flops: float
    peak_gflops: float

    @property
    def seconds(self) -> float:
        return self.flops / (self.peak_gflops * 1e9)

    def best_ratio(self, other_seconds: float) -> float:
        """The largest speed-up over a system taking ``other_seconds`` for the same work that this
        floor allows."""
        return other_seconds / self.seconds

    def verdict(self, what: str, best: float, target: float) -> str:
        """One line: whether ``target`` (a rate or ratio, higher is better) is within ``best``."""
        if best >= target:
            return f"{what}: target {target:g} is within the compute floor's bound ({best:.2f})"
        return (
            f"{what}: target {target:g} is UNREACHABLE on this machine: at 100% of the measured fp32 "
            f"GEMM peak ({self.peak_gflops:.1f} GFLOP/s) the {self.flops / 1e9:.3f} GFLOP take "
            f"{self.seconds * 1e3:.2f} ms, which allows at most {best:.2f}"
        )


def cohort_step(
    model_name: str, input_shape: tuple[int, int, int], devices: int, batch: int, norm: str | None
) -> tuple[float, Callable[[], object], str]:
    """FLOPs of one cohort epoch, the call that runs it, and which path ``auto`` picks."""
    g = torch.Generator().manual_seed(0)
    model = build_model(model_name, input_shape, 10, g, norm=norm)
    jobs = [
        LocalJob(
            torch.randn(batch, *input_shape, generator=g),
            torch.randint(0, 10, (batch,), generator=g),
            {},
            draw_orders(batch, 1, g),
        )
        for _ in range(devices)
    ]
    sgd = SGDConfig(0.05, 0.9, batch)
    batched = prefer_batched(model, input_shape, batch)
    call = (
        partial(train_batched, model, jobs, sgd) if batched else partial(train_sequential, model, jobs, sgd)
    )
    flops = 3 * forward_flops_per_sample(model, input_shape) * batch * devices
    return flops, call, "batched" if batched else "sequential"


def collect(repeats: int = 5, quick: bool = False) -> Collected:
    """GEMM peak, cohort-step GFLOP/s and their ratio; ``quick``: small sizes for tests."""
    n = 256 if quick else gemm_size()
    a, b = torch.randn(n, n), torch.randn(n, n)
    gemm = partial(torch.mm, a, b)
    cases = {
        "ResNet-20 (no norm), 3x32x32, 8 devices x batch 32": ("resnet20", (3, 32, 32), 8, 32, "none"),
        "small CNN, digits 8x8, 50 devices x batch 16": ("small-cnn", (1, 8, 8), 50, 16, None),
    }
    if quick:
        cases = {"ResNet-20 (no norm), 3x8x8, 2 devices x batch 4": ("resnet20", (3, 8, 8), 2, 4, "none")}
        repeats = 2
    steps = {label: cohort_step(*spec) for label, spec in cases.items()}
    for _, call, _ in steps.values():
        call()  # warm-up
    samples: dict[str, list[float]] = {"gemm": [], **{label: [] for label in steps}}
    for _ in range(repeats):
        samples["gemm"].append(_gflops(2 * n**3, gemm))
        for label, (flops, call, _) in steps.items():
            samples[label].append(_gflops(flops, call))
    peak = figure(
        SECTION, f"fp32 GEMM peak (torch.mm {n}x{n})", "GFLOP/s", samples["gemm"], higher_is_better=True
    )
    figures: list[Figure] = [peak]
    ratios: list[Ratio] = []
    for i, (label, (_, _, path)) in enumerate(steps.items()):
        step = figure(
            SECTION, f"cohort step: {label}", "GFLOP/s", samples[label], higher_is_better=True, note=path
        )
        figures.append(step)
        ratios.append(Ratio(f"efficiency: {label} / GEMM peak", step, peak, 0.5 if i == 0 else None))
    notes = [
        "training FLOPs = 3 x exact forward FLOPs (conv and linear layers only); an efficiency above 1 "
        "means the step did fewer arithmetic operations than that count (oneDNN may pick Winograd or "
        "other fast algorithms for 3x3 convolutions) or ran above torch.mm's GEMM rate: it is at the "
        "machine's limit either way"
    ]
    return figures, ratios, notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--steps-only",
        type=int,
        metavar="N",
        help="run only the small CNN's cohort step N times, on one thread, and print nothing: a "
        "workload for an outside profiler (perf record -D 5000 ... python -m bench.compute --steps-only 400)",
    )
    args = parser.parse_args(argv)
    if args.steps_only is not None:
        torch.set_num_threads(1)
        _, call, _ = cohort_step("small-cnn", (1, 8, 8), 50, 16, None)
        for _ in range(args.steps_only):
            call()
        return
    report = Report(machine_description())
    report.extend(collect(args.repeats))
    print(report.to_markdown("Compute efficiency benchmark"))


if __name__ == "__main__":
    main()
