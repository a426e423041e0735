"""GPU section: batched vs sequential cohort training on CUDA, small CNN and ResNet-20 cohorts.

Run where CUDA exists (skipped with a note otherwise). Small CNN on digits-shaped data (N = 100 and
1,000 clients, 30 samples each, batch 16, one epoch) and ResNet-20 without norm layers on 3x32x32
synthetic data (N = 10 and 100 clients, 32 samples each, batch 32): the sequential per-client loop
and the batched path (grouped engine), alternating repeat by repeat, synchronised with
``torch.cuda.synchronize`` around each call. Peak GPU memory per path from
``torch.cuda.max_memory_allocated``. ``device="cpu"`` runs the same code on the CPU (used by the
tests, so the section cannot rot unseen on machines without a GPU).

    python -m bench.gpu [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial

import torch

from bench.report import Collected, Figure, Ratio, Report, figure, machine_description
from fedsimenv.learning.cohort import LocalJob, SGDConfig, draw_orders, train_batched, train_sequential
from fedsimenv.learning.models import build_model

SECTION = "GPU cohort training"


def _timed(call: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _jobs(
    clients: int, samples: int, shape: tuple[int, ...], device: torch.device, g: torch.Generator
) -> list[LocalJob]:
    return [
        LocalJob(
            torch.randn(samples, *shape, generator=g).to(device),
            torch.randint(0, 10, (samples,), generator=g).to(device),
            {},
            draw_orders(samples, 1, g),
        )
        for _ in range(clients)
    ]


def collect(device: str = "cuda", repeats: int = 5, quick: bool = False) -> Collected:
    """Figures of this section; a note and nothing else when ``device`` is CUDA and none exists."""
    if device == "cuda" and not torch.cuda.is_available():
        return [], [], ["GPU section skipped: no CUDA device on this machine"]
    dev = torch.device(device)
    # (model, norm, input shape, samples per client, batch, client counts)
    cases: list[tuple[str, str | None, tuple[int, int, int], int, int, tuple[int, ...]]] = [
        ("small-cnn", None, (1, 8, 8), 30, 16, (100, 1_000)),
        ("resnet20", "none", (3, 32, 32), 32, 32, (10, 100)),
    ]
    if quick:
        cases = [("small-cnn", None, (1, 8, 8), 6, 4, (3,))]
        repeats = 1
    g = torch.Generator().manual_seed(0)
    figures: list[Figure] = []
    ratios: list[Ratio] = []
    for name, norm, shape, samples, batch, client_counts in cases:
        model = build_model(name, shape, 10, g, device=dev, norm=norm)
        sgd = SGDConfig(0.05, 0.9, batch)
        for clients in client_counts:
            jobs = _jobs(clients, samples, shape, dev, g)
            calls: dict[str, Callable[[], object]] = {
                "sequential": partial(train_sequential, model, jobs, sgd),
                "batched": partial(train_batched, model, jobs, sgd, "grouped"),
            }
            peak_mib: dict[str, float] = {}
            for path, call in calls.items():  # warm-up, and each path's own memory peak
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                call()
                if dev.type == "cuda":
                    peak_mib[path] = torch.cuda.max_memory_allocated(dev) / 2**20
            times: dict[str, list[float]] = {path: [] for path in calls}
            for _ in range(repeats):
                for path, call in calls.items():
                    times[path].append(_timed(call, dev))
            case = f"{name}, N={clients}, batch {batch}"
            pair = {
                path: figure(
                    SECTION,
                    f"{path}, {case}",
                    "ms/round",
                    [t * 1e3 for t in samples_s],
                    note=f"peak {peak_mib[path]:.0f} MiB" if path in peak_mib else "",
                )
                for path, samples_s in times.items()
            }
            figures += pair.values()
            ratios.append(Ratio(f"GPU sequential / batched, {case}", pair["sequential"], pair["batched"]))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return figures, ratios, [f"GPU section ran on {name}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        # Nothing to measure: say so in one line and exit cleanly (CI and CPU machines run this too).
        print(
            f"bench.gpu: no CUDA device here (torch {torch.__version__}: torch.cuda.is_available() is "
            "False); nothing measured. `--device cpu` runs the same code on the CPU.",
            file=sys.stderr,
        )
        return 0
    report = Report(machine_description())
    report.extend(collect(args.device, args.repeats))
    print(report.to_markdown("GPU benchmark"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
