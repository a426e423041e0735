"""Batched vs sequential cohort training, where batching stops paying, and ResNet-18 pruning time.

Cohort: N clients with 30 digits samples each (the whole digits set is reused cyclically), one local
epoch, small CNN with magnitude masks at rho = 0.5, batch 16, SGD with momentum. Three paths in the
same run, alternating repeat by repeat (the machine is shared and noisy, so load changes hit all
alike): the sequential per-client ``torch.optim.SGD`` loop, and the batched path with its two engines
(``grouped``: one grouped convolution per layer; ``vmap``: ``torch.func.vmap`` of the forward). The
speed-ups are formed repeat by repeat. The max weight difference to the sequential result and the peak
resident memory of each path are reported: the peak RSS of a fresh process that runs the path once,
minus that of one that only builds the jobs.

Crossover (``--crossover``): the speed-up of the batched path over the sequential one as one
device's minibatch grows (small CNN batch 16/64/256, ResNet-20 on 3x32x32 batch 8/32), against the
forward FLOPs of that minibatch: the evidence for ``cohort.CPU_BATCHED_MAX_STEP_FLOPS``.

Then the time to prune ResNet-18 (CIFAR stem, 3x32x32) to rho = 0.5: unstructured magnitude (soft),
L1-filter soft masks, L1-filter hard (physically slimmed).

    python -m bench.cohort [--clients 10 50 100] [--repeats 7] [--crossover]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch

from bench.report import Collected, Figure, Ratio, Report, figure, machine_description
from fedsimenv.learning.cohort import (
    CPU_BATCHED_MAX_STEP_FLOPS,
    LocalJob,
    SGDConfig,
    draw_orders,
    train_batched,
    train_sequential,
)
from fedsimenv.learning.data import load_digits
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.models import build_model
from fedsimenv.learning.pruning import PRUNING_METHODS
from fedsimenv.learning.states import State

SAMPLES_PER_CLIENT = 30
SECTION = "Cohort training (digits, small CNN, batch 16, one epoch)"
CROSSOVER = "Batched vs sequential crossover (one step per device)"


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(field)


def memory_probe(path: str, num_clients: int) -> float:
    """Peak RSS (MiB) of a fresh process that builds the jobs and runs ``path`` once ("none": only
    builds them, the baseline). A fresh process, because the allocator keeps freed memory (by design,
    see fedsimenv.learning.allocator), so in a long-lived process a path's peak hides in earlier ones.
    Read from the kernel's VmHWM: ``ru_maxrss`` would carry the parent's peak over fork and exec."""
    code = (
        "import sys; from bench.cohort import _probe, _status_mib; _probe(sys.argv[1], int(sys.argv[2])); "
        "print(_status_mib('VmHWM'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, path, str(num_clients)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def _probe(path: str, num_clients: int) -> None:
    model, jobs = digits_jobs(num_clients)
    sgd = SGDConfig(learning_rate=0.05, momentum=0.9, batch_size=16)
    if path == "batched":
        train_batched(model, jobs, sgd)
    elif path == "sequential":
        train_sequential(model, jobs, sgd)


def alternate(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each entry, interleaved repeat by repeat, after one warm-up call each."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def digits_jobs(num_clients: int) -> tuple[torch.nn.Module, list[LocalJob]]:
    data = load_digits()
    x_all, y_all = torch.from_numpy(data.x), torch.from_numpy(data.y)
    model = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    jobs = []
    for k in range(num_clients):
        idx = (torch.arange(SAMPLES_PER_CLIENT) + k * SAMPLES_PER_CLIENT) % len(y_all)
        masks = PRUNING_METHODS.get("magnitude")().masks(model, 0.5, g)
        jobs.append(LocalJob(x_all[idx], y_all[idx], masks, draw_orders(SAMPLES_PER_CLIENT, 1, g)))
    return model, jobs


def _max_diff(a: Sequence[State], b: Sequence[State]) -> float:
    return max((x[k] - y[k]).abs().max().item() for x, y in zip(a, b, strict=True) for k in x)


def cohort(num_clients: int, repeats: int) -> Collected:
    model, jobs = digits_jobs(num_clients)
    sgd = SGDConfig(learning_rate=0.05, momentum=0.9, batch_size=16)
    train_batched(model, jobs[:2], sgd)  # warm-up: first calls pay one-off set-up
    grouped = train_batched(model, jobs, sgd, "grouped")
    sequential = train_sequential(model, jobs, sgd)
    vmapped = train_batched(model, jobs, sgd, "vmap")
    baseline = memory_probe("none", num_clients)
    times = alternate(
        {
            "sequential": lambda: train_sequential(model, jobs, sgd),
            "grouped": lambda: train_batched(model, jobs, sgd, "grouped"),
            "vmap": lambda: train_batched(model, jobs, sgd, "vmap"),
        },
        repeats,
    )
    case = f"N={num_clients}"
    figures = {
        name: figure(SECTION, f"{name}, {case}", "ms/round", [t * 1e3 for t in samples])
        for name, samples in times.items()
    }
    memory = [
        figure(
            SECTION,
            f"peak RSS above baseline, {path}, {case}",
            "MiB",
            [memory_probe(path, num_clients) - baseline],
        )
        for path in ("batched", "sequential")
    ]
    target = 3.0 if num_clients == 50 else None
    ratios = [
        Ratio(f"sequential / batched (grouped), {case}", figures["sequential"], figures["grouped"], target),
        Ratio(f"sequential / batched (vmap), {case}", figures["sequential"], figures["vmap"]),
    ]
    notes = [
        f"{case}: max |w_batched - w_sequential| = {_max_diff(grouped, sequential):.1e} (grouped), "
        f"{_max_diff(vmapped, sequential):.1e} (vmap)"
    ]
    return [*figures.values(), *memory], ratios, notes


def crossover(repeats: int) -> Collected:
    """Speed-up of batched over sequential against one device's minibatch FLOPs, 8 devices."""
    g = torch.Generator().manual_seed(0)
    cases = [
        ("small-cnn", None, (1, 8, 8), 16),
        ("small-cnn", None, (1, 8, 8), 64),
        ("small-cnn", None, (1, 8, 8), 256),
        ("resnet20", "none", (3, 32, 32), 8),
        ("resnet20", "none", (3, 32, 32), 32),
    ]
    figures: list[Figure] = []
    ratios: list[Ratio] = []
    for name, norm, shape, batch in cases:
        model = build_model(name, shape, 10, g, norm=norm)
        step_mflop = forward_flops_per_sample(model, shape) * batch / 1e6
        jobs = [
            LocalJob(
                torch.randn(batch, *shape, generator=g),
                torch.randint(0, 10, (batch,), generator=g),
                {},
                draw_orders(batch, 1, g),
            )
            for _ in range(8)
        ]
        sgd = SGDConfig(0.05, 0.9, batch)
        times = alternate(
            {
                "sequential": partial(train_sequential, model, jobs, sgd),
                "batched": partial(train_batched, model, jobs, sgd, "grouped"),
            },
            repeats,
        )
        case = f"{name} batch {batch} ({step_mflop:.0f} MFLOP/device step)"
        pair = [
            figure(CROSSOVER, f"{path}, {case}", "ms/step", [t * 1e3 for t in s]) for path, s in times.items()
        ]
        figures += pair
        ratios.append(Ratio(f"sequential / batched, {case}", pair[0], pair[1]))
    note = (
        f"cohort: auto batches on a CPU when one device's step is <= {CPU_BATCHED_MAX_STEP_FLOPS / 1e6:.0f} "
        "MFLOP (fedsimenv.learning.cohort.CPU_BATCHED_MAX_STEP_FLOPS); 8 devices per case"
    )
    return figures, ratios, [note]


def pruning_time() -> list[Figure]:
    model = build_model("resnet18", (3, 32, 32), 10, torch.Generator().manual_seed(0)).eval()
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))
    figures = []
    for label, call in (
        ("magnitude soft", lambda: PRUNING_METHODS.get("magnitude")().masks(model, 0.5, g)),
        ("l1-filter soft", lambda: PRUNING_METHODS.get("l1-filter")().masks(model, 0.5, g, batch)),
        ("l1-filter hard", lambda: PRUNING_METHODS.get("l1-filter")().hard(model, 0.5, g, batch)),
    ):
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        figures.append(figure("Pruning time (ResNet-18, rho = 0.5)", label, "s", [seconds]))
    return figures


def collect(
    clients: Sequence[int] = (10, 50, 100), repeats: int = 7, with_crossover: bool = True, quick: bool = False
) -> Collected:
    """Every figure of this module; ``quick`` is a small version for tests (N = 4, 2 repeats)."""
    if quick:
        clients, repeats, with_crossover = (4,), 2, False
    figures: list[Figure] = []
    ratios: list[Ratio] = []
    notes: list[str] = []
    for n in clients:
        f, r, m = cohort(n, repeats)
        figures += f
        ratios += r
        notes += m
    if with_crossover:
        f, r, m = crossover(max(3, repeats // 2))
        figures += f
        ratios += r
        notes += m
    if not quick:
        figures += pruning_time()
    return figures, ratios, notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--crossover", action="store_true", help="also measure the batching crossover")
    args = parser.parse_args(argv)
    report = Report(machine_description())
    report.extend(collect(args.clients, args.repeats, args.crossover))
    print(report.to_markdown("Cohort training benchmark"))


if __name__ == "__main__":
    main()
