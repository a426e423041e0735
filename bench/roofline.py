"""Roofline of the small CNN's cohort step: why it runs below the fp32 GEMM peak.

The cohort step of ``bench.compute`` (small CNN on digits, 50 devices x batch 16, grouped layout) is
split into its operations as the grouped engine runs them: the two grouped convolutions, ReLU, max-pool,
the batched linear layer, cross-entropy and the SGD update. For each operation the script counts

* the floating-point operations it executes in one training step (forward and backward; the first
  convolution computes no input gradient, the element-wise operations count one operation per
  element and pass),
* its compulsory memory traffic (every input, weight and output tensor read or written once per
  pass, fp32), hence its arithmetic intensity (FLOP/byte),

and measures, on one torch thread unless told otherwise,

* the fp32 GEMM peak (square ``torch.mm``, best of the repeats),
* the memory bandwidth of a large copy (``Tensor.copy_``, read + write; tensors well beyond the
  caches) and of a copy the size of the step's largest activation (served from the caches),
* each operation's own time for forward + backward in isolation (best of the repeats).

The roofline bound of an operation is ``min(peak, intensity x bandwidth)``; the step's best possible
time is the sum over operations of ``max(FLOPs / peak, bytes / bandwidth)``, so the highest
efficiency the step can reach against the GEMM peak, counted the way ``bench.compute`` counts (3x the
forward FLOPs of the convolutions and the linear layer), is that count over (best time x peak).
Measured and bound figures are printed side by side.

    python -m bench.roofline [--devices 50] [--batch 16] [--repeats 7] [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.report import Collected, Figure, Ratio, figure

SECTION = "Roofline (small CNN cohort step, fp32)"
FP32_BYTES = 4
#: Large copy: 256 MiB per tensor, far beyond any L3 of the machines this runs on.
DRAM_COPY_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Operation:
    """One operation of the cohort step.

    Attributes:
        name: What it is, with its shapes.
        flops: Floating-point operations it executes in one step (forward + backward).
        counted_flops: What ``bench.compute``'s efficiency counts for it (3 x forward for the
            convolutions and the linear layer, 0 for the rest).
        bytes_moved: Compulsory memory traffic of forward + backward.
        run: Runs its forward and backward once.
    """

    name: str
    flops: float
    counted_flops: float
    bytes_moved: float
    run: Callable[[], object]

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes_moved


def _best_seconds(call: Callable[[], object], repeats: int) -> list[float]:
    call()  # warm-up: first-call allocations, oneDNN primitive creation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def gemm_peak_gflops(n: int, repeats: int) -> list[float]:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return [2 * n**3 / t / 1e9 for t in _best_seconds(lambda: torch.mm(a, b), repeats)]


def copy_bandwidth_gbs(num_bytes: int, repeats: int) -> list[float]:
    """Read + write bandwidth of ``dst.copy_(src)`` for ``num_bytes``-byte tensors."""
    src = torch.randn(num_bytes // FP32_BYTES)
    dst = torch.empty_like(src)
    return [2 * num_bytes / t / 1e9 for t in _best_seconds(lambda: dst.copy_(src), repeats)]


def _backward(out: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> Callable[[], object]:
    grad = torch.randn_like(out)
    return lambda: torch.autograd.grad(out, inputs, grad, retain_graph=True)


def _fwd_bwd(forward: Callable[[], torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> Callable[[], object]:
    def run() -> object:
        out = forward()
        return torch.autograd.grad(out, inputs, torch.ones_like(out))

    return run


def cohort_operations(devices: int, batch: int, height: int = 8) -> list[Operation]:
    """The small CNN's cohort step (grouped layout, as ``fedsimenv.learning.grouped`` runs it: the
    activations channels-last, because the model max-pools)."""
    k, b, hw = devices, batch, height * height
    c1, c2, classes = 16, 32, 10
    pooled = hw // 4
    g = torch.Generator().manual_seed(0)

    def t(*shape: int, grad: bool = True) -> torch.Tensor:
        value = torch.randn(*shape, generator=g)
        if value.dim() == 4:  # activations channels-last, as the grouped engine runs this model
            value = value.contiguous(memory_format=torch.channels_last)
        return value.requires_grad_(grad)

    ops = []
    # conv1: 1 -> 16 channels per device; the input (data) needs no gradient.
    x0 = t(b, k, height, height, grad=False)
    w1, b1 = t(k * c1, 1, 3, 3), t(k * c1)
    fwd1 = 2 * b * hw * k * c1 * 9
    ops.append(
        Operation(
            f"conv1 grouped ({b}x{k}x{height}x{height} -> {k * c1} ch)",
            2 * fwd1,  # forward + weight gradient
            3 * fwd1,
            FP32_BYTES * (2 * x0.numel() + 3 * w1.numel() + 2 * b * k * c1 * hw),
            _fwd_bwd(lambda: F.conv2d(x0, w1, b1, 1, 1, 1, k), (w1, b1)),
        )
    )
    a1 = t(b, k * c1, height, height)
    ops.append(
        Operation(
            f"ReLU ({a1.numel():,} elements)",
            2 * a1.numel(),
            0.0,
            FP32_BYTES * 4 * a1.numel(),  # forward read + write; backward reads grad and mask, writes
            _fwd_bwd(lambda: F.relu(a1), (a1,)),
        )
    )
    w2, b2 = t(k * c2, c1, 3, 3), t(k * c2)
    fwd2 = 2 * b * hw * k * c2 * c1 * 9
    ops.append(
        Operation(
            f"conv2 grouped ({k * c1} -> {k * c2} ch, {k} groups)",
            3 * fwd2,
            3 * fwd2,
            FP32_BYTES * (3 * a1.numel() + 3 * w2.numel() + 3 * b * k * c2 * hw),
            _fwd_bwd(lambda: F.conv2d(a1, w2, b2, 1, 1, 1, k), (a1, w2, b2)),
        )
    )
    a2 = t(b, k * c2, height, height)
    pooled_elements = b * k * c2 * pooled
    ops.append(
        Operation(
            f"max-pool 2x2 ({a2.numel():,} elements)",
            a2.numel() + pooled_elements,  # comparisons; backward scatters
            0.0,
            FP32_BYTES * (2 * a2.numel() + 3 * pooled_elements),
            _fwd_bwd(lambda: F.max_pool2d(a2, 2), (a2,)),
        )
    )
    a3 = t(b, k * c2 * pooled)
    ops.append(
        Operation(
            f"ReLU after pool ({a3.numel():,} elements)",
            2 * a3.numel(),
            0.0,
            FP32_BYTES * 4 * a3.numel(),
            _fwd_bwd(lambda: F.relu(a3), (a3,)),
        )
    )
    features = c2 * pooled
    blocks = t(k, b, features)
    w3, b3 = t(k, classes, features), t(k, classes)
    fwd3 = 2 * k * b * features * classes
    ops.append(
        Operation(
            f"linear batched ({k} x {b}x{features} @ {features}x{classes})",
            3 * fwd3,
            3 * fwd3,
            FP32_BYTES * (3 * blocks.numel() + 3 * w3.numel() + 3 * k * b * classes),
            _fwd_bwd(lambda: torch.baddbmm(b3.unsqueeze(1), blocks, w3.transpose(1, 2)), (blocks, w3, b3)),
        )
    )
    logits = t(k * b, classes)
    labels = torch.randint(0, classes, (k * b,), generator=g)
    ops.append(
        Operation(
            f"cross-entropy ({k * b} x {classes})",
            10 * logits.numel(),  # exp, sum, log, subtract; backward softmax - one-hot
            0.0,
            FP32_BYTES * 3 * logits.numel(),
            _fwd_bwd(lambda: F.cross_entropy(logits, labels, reduction="none"), (logits,)),
        )
    )
    num_params = k * (w1[0].numel() * c1 + c1 + c2 * c1 * 9 + c2 + classes * features + classes)
    params = [torch.randn(num_params, generator=g)]
    grads, buffers = [torch.randn(num_params, generator=g)], [torch.randn(num_params, generator=g)]

    def sgd() -> None:
        torch._foreach_mul_(buffers, 0.9)
        torch._foreach_add_(buffers, grads)
        torch._foreach_add_(params, buffers, alpha=-0.05)

    ops.append(
        Operation(
            f"SGD momentum update ({num_params:,} parameters)",
            4 * num_params,
            0.0,
            FP32_BYTES * 7 * num_params,  # buf r/w, grad r, then buf r, param r/w (three passes)
            sgd,
        )
    )
    return ops


@dataclass(frozen=True)
class Roofline:
    peak_gflops: list[float]
    dram_gbs: list[float]
    cache_gbs: list[float]
    operations: list[Operation]
    op_seconds: dict[str, list[float]]

    @property
    def peak(self) -> float:
        return max(self.peak_gflops)

    @property
    def bandwidth(self) -> float:
        # The step's tensors (a few MiB each) are served from the caches; the cache-sized copy is the
        # bandwidth they see. The DRAM figure is printed for reference.
        return max(self.cache_gbs)

    def bound_seconds(self, op: Operation) -> float:
        return max(op.flops / (self.peak * 1e9), op.bytes_moved / (self.bandwidth * 1e9))

    def best_step_seconds(self) -> float:
        return sum(self.bound_seconds(op) for op in self.operations)

    def measured_step_seconds(self) -> float:
        return sum(min(self.op_seconds[op.name]) for op in self.operations)

    def counted_flops(self) -> float:
        return sum(op.counted_flops for op in self.operations)

    def max_efficiency(self) -> float:
        """The highest ``bench.compute`` efficiency the roofline allows for the whole step."""
        return self.counted_flops() / (self.best_step_seconds() * self.peak * 1e9)


def measure(devices: int, batch: int, repeats: int, quick: bool = False) -> Roofline:
    gemm_n = 256 if quick else 1024
    ops = cohort_operations(devices, batch)
    largest = max(op.bytes_moved for op in ops)
    cache_bytes = int(min(largest, 8 * 2**20))
    dram_bytes = 8 * 2**20 if quick else DRAM_COPY_BYTES
    return Roofline(
        gemm_peak_gflops(gemm_n, repeats),
        copy_bandwidth_gbs(dram_bytes, max(2, repeats // 2)),
        copy_bandwidth_gbs(cache_bytes, repeats),
        ops,
        {op.name: _best_seconds(op.run, repeats) for op in ops},
    )


def print_roofline(roof: Roofline) -> None:
    print(
        f"torch threads {torch.get_num_threads()}: fp32 GEMM peak {roof.peak:.1f} GFLOP/s (best of "
        f"{len(roof.peak_gflops)}); copy bandwidth {max(roof.cache_gbs):.1f} GB/s cache-sized, "
        f"{max(roof.dram_gbs):.1f} GB/s DRAM-sized; ridge point {roof.peak / roof.bandwidth:.1f} FLOP/byte"
    )
    columns = ("MFLOP", 8), ("MB", 7), ("FLOP/B", 7), ("bound ms", 9), ("best ms", 8), ("GFLOP/s", 8)
    print(f"{'operation':<58} " + " ".join(f"{name:>{width}}" for name, width in columns))
    for op in roof.operations:
        best = min(roof.op_seconds[op.name])
        print(
            f"{op.name:<58} {op.flops / 1e6:8.1f} {op.bytes_moved / 1e6:7.2f} {op.intensity:7.2f} "
            f"{roof.bound_seconds(op) * 1e3:9.3f} {best * 1e3:8.3f} {op.flops / best / 1e9:8.1f}"
        )
    best_s, measured_s = roof.best_step_seconds(), roof.measured_step_seconds()
    counted = roof.counted_flops()
    print(
        f"step: roofline bound {best_s * 1e3:.3f} ms, sum of the operations measured "
        f"{measured_s * 1e3:.3f} ms; "
        f"counted FLOPs {counted / 1e6:.1f} M -> highest possible efficiency {roof.max_efficiency():.0%} "
        f"of the GEMM peak, measured operations alone {counted / measured_s / 1e9 / roof.peak:.0%}"
    )


def collect(repeats: int = 7, quick: bool = False) -> Collected:
    """Peak, bandwidths, per-operation and whole-step figures; ratios: the bound and measured
    efficiencies of the step against the GEMM peak."""
    devices, batch = (4, 4) if quick else (50, 16)
    roof = measure(devices, batch, 2 if quick else repeats, quick)
    figures: list[Figure] = [
        figure(
            SECTION,
            "fp32 GEMM peak (torch.mm, one run's best)",
            "GFLOP/s",
            roof.peak_gflops,
            higher_is_better=True,
        ),
        figure(SECTION, "copy bandwidth, cache-sized", "GB/s", roof.cache_gbs, higher_is_better=True),
        figure(SECTION, "copy bandwidth, 256 MiB", "GB/s", roof.dram_gbs, higher_is_better=True),
    ]
    for op in roof.operations:
        note = f"{op.intensity:.2f} FLOP/byte, roofline bound {roof.bound_seconds(op) * 1e3:.3f} ms"
        figures.append(
            figure(
                SECTION, f"{op.name}: fwd+bwd", "ms", [s * 1e3 for s in roof.op_seconds[op.name]], note=note
            )
        )
    bound = figure(
        SECTION, f"step bound (N={devices}, batch {batch})", "ms", [roof.best_step_seconds() * 1e3]
    )
    measured = figure(
        SECTION,
        f"step, sum of operations (N={devices}, batch {batch})",
        "ms",
        [roof.measured_step_seconds() * 1e3],
    )
    figures += [bound, measured]
    notes = [
        f"roofline (N={devices}, batch {batch}): highest efficiency the step can reach against the GEMM peak "
        f"= {roof.max_efficiency():.0%} (counted FLOPs / (sum of per-operation bounds x peak)); element-wise "
        "operations, the max-pool and the update carry no counted FLOPs but cost memory traffic"
    ]
    return figures, [Ratio("roofline: measured step / bound", measured, bound, paired=False)], notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    print_roofline(measure(args.devices, args.batch, args.repeats))


if __name__ == "__main__":
    main()
