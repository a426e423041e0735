"""Channel throughput: gains and uplink rates for 10,000 devices x 1,000 coherence blocks.

Three measurements in one run (the machine is shared and noisy, so ratios are taken within the run):

1. vectorised i.i.d. block fading through the library (macro-cell path loss, 8 dB log-normal
   shadowing, Rayleigh fading, FDMA Shannon rate), blocks processed in chunks;
2. the time-correlated path: :class:`channels.DynamicChannel` with random-waypoint mobility,
   Gudmundson shadowing, 3GPP UMa path loss with LOS state and Gauss-Markov fading, one
   ``advance`` per block (fewer blocks, same N);
3. a per-device pure-Python loop computing the same gain and rate as (1) on a subset, in two
   flavours: lean inlined ``math`` arithmetic (the honest baseline) and calling the library's
   array functions with one device at a time (what a naive per-device simulator would do).

Prints device-blocks per second for each and the ratios of (1) to (3). Target: (1) >= 1e7 /s.

    python -m bench.channels [--devices 10000] [--blocks 1000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from bench.report import Collected, Ratio, figure
from channels import ChannelModel, DynamicChannel, dbm_to_watt, shannon_rate_bps
from channels.fading import RayleighFading
from channels.mobility import RandomWaypointMobility, RandomWaypointParams, uniform_in_annulus
from channels.pathloss import MacroCellParams, MacroCellPathLoss
from channels.pathloss_3gpp import UMaParams, UMaPathLoss
from channels.shadowing import GudmundsonParams, GudmundsonShadowing
from channels.temporal import GaussMarkovFading, GaussMarkovParams

RADIUS_M, MIN_M = 500.0, 10.0
NOISE_W_PER_HZ = float(dbm_to_watt(-174.0))
TX_POWER_W = float(dbm_to_watt(10.0))


def vectorised(devices: int, blocks: int, chunk: int = 50) -> tuple[float, float]:
    """Seconds for ``devices x blocks`` gains + rates, and a checksum (mean rate, bit/s)."""
    rng = np.random.default_rng(0)
    channel = ChannelModel(MacroCellPathLoss(MacroCellParams()), RayleighFading(RayleighFading.Params()), 8.0)
    distance_m = np.hypot(*uniform_in_annulus(devices, RADIUS_M, MIN_M, rng).T)
    shadowing_db = channel.sample_shadowing_db(devices, rng)
    bandwidth_hz = np.full(devices, 20e6 / devices)
    total = 0.0
    start = time.perf_counter()
    large = channel.large_scale_gain(distance_m, shadowing_db)
    for first in range(0, blocks, chunk):
        rows = min(chunk, blocks - first)
        fading = channel.fading.sample_power_gain(rows * devices, rng).reshape(rows, devices)
        rate = shannon_rate_bps(bandwidth_hz, TX_POWER_W, large * fading, NOISE_W_PER_HZ)
        total += float(rate.sum())
    return time.perf_counter() - start, total / (devices * blocks)


def dynamic(devices: int, blocks: int) -> float:
    """Seconds for ``blocks`` DynamicChannel advances (plus rates) over ``devices`` devices."""
    rng = np.random.default_rng(1)
    channel = ChannelModel(
        UMaPathLoss(UMaParams()),
        GaussMarkovFading(GaussMarkovParams(carrier_freq_hz=3.5e9)),
        shadowing=GudmundsonShadowing(GudmundsonParams(std_db=6.0)),
    )
    mobility = RandomWaypointMobility(RandomWaypointParams(min_speed_mps=1.0, max_speed_mps=15.0))
    world = DynamicChannel(channel, mobility, RADIUS_M, MIN_M)
    world.reset(uniform_in_annulus(devices, RADIUS_M, MIN_M, rng), rng)
    bandwidth_hz = np.full(devices, 20e6 / devices)
    start = time.perf_counter()
    for _ in range(blocks):
        shannon_rate_bps(bandwidth_hz, TX_POWER_W, world.advance(0.01), NOISE_W_PER_HZ)
    return time.perf_counter() - start


def python_loop(devices: int, blocks: int) -> float:
    """Seconds for the same computation as :func:`vectorised`, one device at a time in Python."""
    rng = np.random.default_rng(2)
    distance_m = [float(d) for d in np.hypot(*uniform_in_annulus(devices, RADIUS_M, MIN_M, rng).T)]
    shadowing_db = [float(x) for x in rng.normal(0.0, 8.0, devices)]
    bandwidth_hz = 20e6 / 10_000
    start = time.perf_counter()
    for _ in range(blocks):
        for k in range(devices):
            path_loss_db = 128.1 + 37.6 * math.log10(max(distance_m[k], 1.0) / 1e3)
            gain = 10 ** (-(path_loss_db + shadowing_db[k]) / 10) * rng.exponential()
            snr = TX_POWER_W * gain / (NOISE_W_PER_HZ * bandwidth_hz)
            _ = bandwidth_hz * math.log2(1.0 + snr)
    return time.perf_counter() - start


def library_per_device(devices: int, blocks: int) -> float:
    """Seconds for :func:`vectorised`'s work calling the library once per device and block."""
    rng = np.random.default_rng(3)
    channel = ChannelModel(MacroCellPathLoss(MacroCellParams()), RayleighFading(RayleighFading.Params()), 8.0)
    distance_m = np.hypot(*uniform_in_annulus(devices, RADIUS_M, MIN_M, rng).T)
    shadowing_db = channel.sample_shadowing_db(devices, rng)
    start = time.perf_counter()
    for _ in range(blocks):
        for k in range(devices):
            gain = channel.sample_gain(distance_m[k : k + 1], shadowing_db[k : k + 1], rng)
            shannon_rate_bps(20e6 / 10_000, TX_POWER_W, gain, NOISE_W_PER_HZ)
    return time.perf_counter() - start


SECTION = "Channel throughput"


def collect(devices: int = 10_000, blocks: int = 1_000, repeats: int = 3, quick: bool = False) -> Collected:
    """Device-blocks per second of each path; ratios vectorised / per-device loops (target >= 1e7/s)."""
    if quick:
        devices, blocks, repeats = 200, 10, 1
    rates: dict[str, list[float]] = {"vectorised": [], "dynamic": [], "loop": []}
    dyn_blocks = max(1, blocks // 10)
    loop_devices, loop_blocks = min(devices, 1_000), max(1, min(blocks, 20))
    for _ in range(repeats):
        rates["vectorised"].append(devices * blocks / vectorised(devices, blocks)[0])
        rates["dynamic"].append(devices * dyn_blocks / dynamic(devices, dyn_blocks))
        rates["loop"].append(loop_devices * loop_blocks / python_loop(loop_devices, loop_blocks))
    unit = "device-blocks/s"
    vec = figure(
        SECTION,
        f"vectorised i.i.d. blocks, {devices} devices",
        unit,
        rates["vectorised"],
        higher_is_better=True,
    )
    dyn = figure(
        SECTION,
        f"DynamicChannel (mobility, UMa+LOS, Gudmundson, Gauss-Markov), {devices} devices",
        unit,
        rates["dynamic"],
        higher_is_better=True,
    )
    loop = figure(SECTION, "per-device Python loop (lean math)", unit, rates["loop"], higher_is_better=True)
    target_met = "met" if vec.median >= 1e7 else "NOT met"
    return (
        [vec, dyn, loop],
        [Ratio("vectorised / per-device loop", vec, loop)],
        [f"channel target >= 1e7 device-blocks/s on the vectorised path: {target_met}"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=1_000)
    args = parser.parse_args()
    n, t = args.devices, args.blocks

    seconds, mean_rate = vectorised(n, t)
    vec_rate = n * t / seconds
    print(
        f"vectorised i.i.d. blocks : {n} devices x {t} blocks in {seconds:.3f} s "
        f"= {vec_rate:.3e} device-blocks/s (mean rate {mean_rate / 1e3:.1f} kbit/s) "
        f"[target >= 1e7: {'met' if vec_rate >= 1e7 else 'NOT met'}]"
    )

    dyn_blocks = max(1, t // 10)
    seconds = dynamic(n, dyn_blocks)
    print(
        f"DynamicChannel (mobility, UMa+LOS, Gudmundson, Gauss-Markov): {n} x {dyn_blocks} blocks in "
        f"{seconds:.3f} s = {n * dyn_blocks / seconds:.3e} device-blocks/s"
    )

    loop_devices, loop_blocks = min(n, 1_000), max(1, min(t, 20))
    seconds = python_loop(loop_devices, loop_blocks)
    loop_rate = loop_devices * loop_blocks / seconds
    print(
        f"per-device Python loop   : {loop_devices} x {loop_blocks} blocks in {seconds:.3f} s "
        f"= {loop_rate:.3e} device-blocks/s"
    )
    seconds = library_per_device(200, 5)
    lib_rate = 200 * 5 / seconds
    print(f"library called per device: 200 x 5 blocks in {seconds:.3f} s = {lib_rate:.3e} device-blocks/s")
    print(
        f"speed-up vectorised / lean loop: {vec_rate / loop_rate:.0f}x; "
        f"vectorised / library per device: {vec_rate / lib_rate:.0f}x"
    )


if __name__ == "__main__":
    main()
