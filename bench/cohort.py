"""Batched (torch.func) vs sequential cohort training, and ResNet-18 pruning time.

N clients with 30 digits samples each (the whole digits set is reused cyclically), one local epoch,
small CNN, batch 16, SGD with momentum: the sequential per-client loop and the batched path in the
same run, with the max weight difference between them and the peak resident memory growth of each
(``ru_maxrss`` is a process-wide high-water mark, so the batched path runs first). Then the time to
prune ResNet-18 (CIFAR stem, 3x32x32) to rho = 0.5: unstructured magnitude (soft), L1-filter soft
masks, L1-filter hard (physically slimmed). Cohort times are medians of alternating repeats (the
machine is shared and noisy); the speed-up is the ratio of the medians.

    python -m bench.cohort [--clients 10 50 100] [--repeats 7]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from fedsimenv.learning.cohort import LocalJob, SGDConfig, draw_orders, train_batched, train_sequential
from fedsimenv.learning.data import load_digits
from fedsimenv.learning.models import build_model
from fedsimenv.learning.pruning import PRUNING_METHODS

SAMPLES_PER_CLIENT = 30


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cohort(num_clients: int, repeats: int) -> None:
    data = load_digits()
    x_all, y_all = torch.from_numpy(data.x), torch.from_numpy(data.y)
    model = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    jobs = []
    for k in range(num_clients):
        idx = (torch.arange(SAMPLES_PER_CLIENT) + k * SAMPLES_PER_CLIENT) % len(y_all)
        masks = PRUNING_METHODS.get("magnitude")().masks(model, 0.5, g)
        jobs.append(LocalJob(x_all[idx], y_all[idx], masks, draw_orders(SAMPLES_PER_CLIENT, 1, g)))
    sgd = SGDConfig(learning_rate=0.05, momentum=0.9, batch_size=16)
    train_batched(model, jobs[:2], sgd)  # warm-up: first vmap call pays one-off set-up
    before = _peak_mib()
    batched = train_batched(model, jobs, sgd)
    mem_batched = _peak_mib() - before
    before = _peak_mib()
    sequential = train_sequential(model, jobs, sgd)
    mem_sequential = _peak_mib() - before
    # Alternate the two paths so that load changes on this shared machine hit both alike.
    times: dict[str, list[float]] = {"batched": [], "sequential": []}
    for _ in range(repeats):
        for name, train in (("batched", train_batched), ("sequential", train_sequential)):
            start = time.perf_counter()
            train(model, jobs, sgd)
            times[name].append(time.perf_counter() - start)
    t_batched, t_sequential = (statistics.median(times[k]) for k in ("batched", "sequential"))
    diff = max((a[k] - b[k]).abs().max().item() for a, b in zip(batched, sequential, strict=True) for k in a)
    fastest = {k: min(v) * 1e3 for k, v in times.items()}
    print(
        f"N={num_clients:4d}  sequential {t_sequential * 1e3:7.1f} ms (min {fastest['sequential']:6.1f})  "
        f"batched {t_batched * 1e3:7.1f} ms (min {fastest['batched']:6.1f})  "
        f"speed-up {t_sequential / t_batched:5.2f}x (medians)  max |dw| {diff:.1e}  "
        f"peak RSS growth: batched {mem_batched:.0f} MiB, sequential {mem_sequential:.0f} MiB"
    )


def pruning_time() -> None:
    model = build_model("resnet18", (3, 32, 32), 10, torch.Generator().manual_seed(0)).eval()
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))
    for label, call in (
        ("magnitude soft", lambda: PRUNING_METHODS.get("magnitude")().masks(model, 0.5, g)),
        ("l1-filter soft", lambda: PRUNING_METHODS.get("l1-filter")().masks(model, 0.5, g, batch)),
        ("l1-filter hard", lambda: PRUNING_METHODS.get("l1-filter")().hard(model, 0.5, g, batch)),
    ):
        start = time.perf_counter()
        call()
        print(f"ResNet-18 rho=0.5 {label}: {time.perf_counter() - start:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.repeats} "
        "alternating repeats on a shared machine"
    )
    for n in args.clients:
        cohort(n, args.repeats)
    pruning_time()


if __name__ == "__main__":
    main()
