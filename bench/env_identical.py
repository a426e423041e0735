"""Whole-rollout identity of this checkout against another one (e.g. a ``git worktree`` of main).

For env-speed work whose contract is "the same seed gives the same bytes": each scenario variant
below (the surrogate fast path at N = 20 and 50, every fallback of the fast path, optional
controls, budgets and rewards, wrappers, direct ``step_decision`` calls, a few steps of real
training) is rolled out with seeded actions in a child process per checkout, and every reset and
step is reduced to SHA-256 digests of the pickled observation, reward, flags, info, ``last_report``,
the simulator state (clock, batteries, job table, arrivals, round counter, downlink rate), the plan's
request and costs, the learning result and the covering index. Any digest that differs between
the two checkouts is printed (variant, step, field); the exit status is 1 then.

    python -m bench.env_identical --against /path/to/other/checkout [--only NAME ...]

Only the env's public API is used in the children (plus ``fedsimenv.wrappers`` and
``fedsimenv.sim.RoundDecision``), so any checkout of the project can be the other side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

UMA_LOS = {"model": "3gpp-uma", "params": {"carrier_freq_hz": 3.5e9, "condition": "probabilistic"}}
SHADOW = {"model": "gudmundson", "params": {"std_db": 6.0}}
CONTROLS_ALL = ["select", "rho", "bandwidth", "power", "cpu_freq", "quant_bits"]

#: (name, overrides, steps, trainer, wrapper, action kind). Wrapper: "" (canonical Box), "dict",
#: "discrete" (MultiDiscreteActionWrapper), "decision" (``step_decision`` with a RoundDecision).
#: Action kind: "uniform" in [-1.2, 1.2] with NaN and +-inf actions mixed in.
VARIANTS: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("surrogate N=20", {"cell.num_devices": 20, "episode.max_rounds": 50}, 120, "surrogate", ""),
    ("surrogate N=50", {"cell.num_devices": 50, "episode.max_rounds": 50}, 60, "surrogate", ""),
    ("surrogate N=3, short episodes", {"cell.num_devices": 3, "episode.max_rounds": 4}, 30, "surrogate", ""),
    ("power, cpu_freq, idle power", {
        "cell.num_devices": 20,
        "action.controls": ["select", "rho", "bandwidth", "power", "cpu_freq"],
        "devices.idle_power_w": 0.05,
    }, 40, "surrogate", ""),
    ("quant_bits, noise figure, interference", {
        "cell.num_devices": 20,
        "action.controls": ["select", "rho", "bandwidth", "quant_bits"],
        "network.noise_figure_db": 7.0,
        "network.interference_psd_dbm_per_hz": -170.0,
    }, 40, "surrogate", ""),
    ("LOS, shadowing, time budget, accuracy-latency-energy", {
        "cell.num_devices": 20,
        "channel.path_loss": UMA_LOS,
        "channel.shadowing": SHADOW,
        "episode.time_budget_s": 40.0,
        "reward.name": "accuracy-latency-energy",
    }, 40, "surrogate", ""),
    ("energy budget, time-to-target", {
        "cell.num_devices": 20,
        "episode.energy_budget_j": 2.0,
        "devices.idle_power_w": 0.02,
        "reward.name": "time-to-target",
        "episode.target_accuracy": 0.6,
    }, 40, "surrogate", ""),
    ("target accuracy ends episodes", {
        "cell.num_devices": 20, "episode.target_accuracy": 0.5, "episode.max_rounds": 50,
    }, 60, "surrogate", ""),
    ("time-to-target-shaped", {
        "cell.num_devices": 10, "reward.name": "time-to-target-shaped", "episode.target_accuracy": 0.6,
    }, 30, "surrogate", ""),
    ("no fading", {"cell.num_devices": 10, "channel.fading": {"model": "none"}}, 20, "surrogate", ""),
    ("finite batteries (fallback)", {
        "cell.num_devices": 12,
        "devices.battery_capacity_j": {"distribution": "constant", "value": 5.0},
        "devices.idle_power_w": 0.05,
    }, 30, "surrogate", ""),
    ("packet errors (fallback)", {
        "cell.num_devices": 12,
        "network.packet_error": {"waterfall_threshold": 5.0, "max_transmissions": 2},
    }, 30, "surrogate", ""),
    ("ofdma + rb control (fallback)", {
        "cell.num_devices": 12,
        "network.access": "ofdma",
        "network.resource_blocks": {"count": 25, "bandwidth_hz": 0.8e6},
        "action.controls": ["select", "rho", "bandwidth", "rb"],
    }, 30, "surrogate", ""),
    ("coherence time (fallback)", {
        "cell.num_devices": 12, "channel.coherence_time_s": 0.3,
    }, 30, "surrogate", ""),
    ("availability (fallback)", {
        "cell.num_devices": 12,
        "devices.availability": {"on_to_off_rate_per_s": 0.3, "off_to_on_rate_per_s": 0.5},
    }, 30, "surrogate", ""),
    ("deadline protocol (fallback)", {
        "cell.num_devices": 12, "protocol": {"name": "deadline", "deadline_s": 0.5},
    }, 30, "surrogate", ""),
    ("over-commit protocol (fallback)", {
        "cell.num_devices": 12, "protocol": {"name": "over-commit", "target_updates": 3},
    }, 30, "surrogate", ""),
    ("async protocol, real training", {
        "cell.num_devices": 6, "protocol": {"name": "async", "target_updates": 2},
    }, 4, "torch", ""),
    ("mobility, gauss-markov (vehicular-like)", {
        "cell.num_devices": 10,
        "channel.mobility": {"model": "random-waypoint", "params": {"min_speed_mps": 0.5}},
        "channel.fading": {"model": "gauss-markov", "params": {"carrier_freq_hz": 3.5e9, "speed_mps": 15.0}},
        "channel.path_loss": UMA_LOS,
        "channel.shadowing": SHADOW,
    }, 25, "surrogate", ""),
    ("Dict action wrapper, all controls", {
        "cell.num_devices": 10, "action.controls": CONTROLS_ALL,
    }, 25, "surrogate", "dict"),
    ("MultiDiscrete wrapper", {"cell.num_devices": 10}, 25, "surrogate", "discrete"),
    ("step_decision, unvalidated decisions", {"cell.num_devices": 10}, 25, "surrogate", "decision"),
    ("step_decision with powers and frequencies", {
        "cell.num_devices": 10, "action.controls": ["select", "rho", "bandwidth", "power", "cpu_freq"],
    }, 25, "surrogate", "decision"),
    ("real training tiny", {"episode.max_rounds": 3}, 4, "torch", ""),
]  # fmt: skip

#: The child: rolls every requested variant out with this checkout's code and prints one JSON
#: object {variant: [[step, {field: sha256}], ...]}.
CHILD = r"""
import hashlib, json, pickle, sys
import numpy as np, torch
torch.set_num_threads(1)
from fedsimenv.env import WirelessFLEnv
from fedsimenv.sim import RoundDecision
from fedsimenv import wrappers

def digest(value):
    return hashlib.sha256(pickle.dumps(value, protocol=4)).hexdigest()[:16]

def state(env):
    sim = env.unwrapped.simulator
    plan = env.unwrapped.last_plan
    learning = env.unwrapped.last_learning
    return {
        "sim": digest((sim.now_s, sim.battery_j, sim.jobs, list(sim.arrivals), sim.busy, sim.round_index,
                       sim.downlink_rate_bps)),
        "plan": digest(None if plan is None else (dict(plan.pruning_rates), dict(plan.costs))),
        "learning": digest(learning),
        "covering": digest(env.unwrapped.last_covering),
    }

def decision(env, rng):
    base = env.unwrapped
    n = base.num_devices
    selected = rng.random(n) < 0.5
    selected[rng.integers(n)] = True
    bandwidth = rng.random(n) * selected
    bandwidth = base.config.network.bandwidth_hz * bandwidth / bandwidth.sum()
    controls = base.config.action.controls
    fleet = base.simulator.fleet
    power = fleet.tx_power_w * rng.uniform(0.1, 1.0, n) if "power" in controls else None
    freq = fleet.cpu_freq_hz * rng.uniform(0.3, 1.0, n) if "cpu_freq" in controls else None
    rho = rng.uniform(0.0, base.config.action.rho_max, n)
    return RoundDecision(selected=selected, pruning_rate=rho, bandwidth_hz=bandwidth, tx_power_w=power,
                         cpu_freq_hz=freq)

def rollout(overrides, steps, trainer, wrapper):
    env = WirelessFLEnv("tiny", trainer=trainer, overrides=overrides)
    if wrapper == "dict":
        env = wrappers.DictActionWrapper(env)
    elif wrapper == "discrete":
        env = wrappers.MultiDiscreteActionWrapper(env, levels=4)
    rng = np.random.default_rng(7)
    env.action_space.seed(7)
    out = []
    obs, info = env.reset(seed=3)
    out.append(["reset", {"obs": digest(obs), "info": digest(info), **state(env)}])
    for step in range(steps):
        if wrapper in ("dict", "discrete"):
            action = env.action_space.sample()
        elif wrapper == "decision":
            action = None
        else:
            action = rng.uniform(-1.2, 1.2, size=env.action_space.shape).astype(np.float32)
            if step % 9 == 4:
                action[:] = np.nan
            elif step % 9 == 7:
                action[rng.random(action.shape) < 0.3] = np.inf
                action[rng.random(action.shape) < 0.3] = -np.inf
            elif step % 9 == 8:
                action[:] = -1.0
        if wrapper == "decision":
            result = env.unwrapped.step_decision(decision(env, rng))
        else:
            result = env.step(action)
        obs, reward, terminated, truncated, info = result
        out.append([step, {"obs": digest(obs), "reward": digest(reward),
                           "flags": digest((terminated, truncated)), "info": digest(info),
                           "report": digest(env.unwrapped.last_report), **state(env)}])
        if terminated or truncated:
            obs, info = env.reset()
            out.append(["reset", {"obs": digest(obs), "info": digest(info), **state(env)}])
    return out

variants = json.loads(sys.argv[1])
print(json.dumps({name: rollout(overrides, steps, trainer, wrapper)
                  for name, overrides, steps, trainer, wrapper in variants}))
"""


def digests(checkout: str, variants: list[tuple[str, dict[str, Any], int, str, str]]) -> dict[str, Any]:
    """Per-variant step digests computed by ``checkout``'s code in a child process."""
    env = dict(os.environ, PYTHONPATH=checkout, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(variants)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the rollout in {checkout} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def compare(here: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """One line per variant: identical (with its record count) or its first differences."""
    lines = []
    for name, records in here.items():
        theirs = other[name]
        diffs = [
            f"{step}: {field}"
            for (step, fields), (_, their_fields) in zip(records, theirs, strict=False)
            for field in fields
            if fields[field] != their_fields.get(field)
        ]
        if len(records) != len(theirs):
            diffs.append(f"{len(records)} records here, {len(theirs)} there")
        state = "IDENTICAL" if not diffs else "DIFFERS at " + ", ".join(diffs[:6])
        lines.append(f"  {name:<55} {len(records):4d} records  {state}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--against", required=True, metavar="CHECKOUT", help="the other checkout")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args()
    variants = [v for v in VARIANTS if not args.only or v[0] in args.only]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    other = os.path.abspath(args.against)
    lines = compare(digests(here, variants), digests(other, variants))
    print(f"{here} against {other}: {len(variants)} variants")
    print("\n".join(lines))
    same = all(line.endswith("IDENTICAL") for line in lines)
    print("all identical" if same else "SOME DIFFER")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
