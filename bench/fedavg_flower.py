"""The FedAvg-round benchmark's Flower peer, run from ``.venv`` in ``.venv-bench`` by subprocess.

Flower and Ray live only in the benchmark's own environment (``make bench-env`` -> ``.venv-bench``).
:func:`run_flower` starts ``bench.peers.flower_fedavg`` there on the same workload (same seed, so the
same split, initial weights and sample orders as ``bench.fedavg_systems``), samples the memory of its
whole process tree (the driver and every Ray process), and reads back its per-round times and
accuracies and its global weights after round 1 and after the last round. :func:`flower_unavailable`
says why it cannot run here, as a one-line note for the report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.fedavg_systems import REPO_ROOT, SEED, WARMUP_ROUNDS, SystemRun
from bench.fedavg_workload import State
from bench.memory import TreeMemory, TreeMemorySampler

FLOWER_TIMEOUT_S = 1200.0
BENCH_PYTHON = REPO_ROOT / ".venv-bench" / "bin" / "python"


def flower_unavailable() -> str | None:
    """Why Flower cannot run here (a one-line note), or None when ``.venv-bench`` has flwr."""
    hint = "run `make bench-env` to create .venv-bench with flwr[simulation]"
    if not BENCH_PYTHON.exists():
        return f"Flower skipped: {BENCH_PYTHON.relative_to(REPO_ROOT)} not found; {hint}"
    check = "import importlib.util, sys; sys.exit(importlib.util.find_spec('flwr') is None)"
    if subprocess.run([str(BENCH_PYTHON), "-c", check], check=False).returncode != 0:
        return f"Flower skipped: flwr is not installed in .venv-bench; {hint}"
    return None


@dataclass(frozen=True)
class FlowerRun:
    """One Flower simulation: the peer's measurements, its tree's memory, its round-1 and last weights."""

    measurements: dict[str, Any]
    memory: TreeMemory
    first_state: State
    final_state: State

    @property
    def run(self) -> SystemRun:
        accuracies = tuple(float(a) for a in self.measurements["accuracies"])
        round_ms = tuple(float(t) for t in self.measurements["round_ms"][WARMUP_ROUNDS:])
        return SystemRun(round_ms, accuracies, self.first_state, self.final_state)


def run_flower(num_clients: int, rounds: int, num_cpus: float | None, workdir: Path) -> FlowerRun:
    """Run ``bench.peers.flower_fedavg`` in ``.venv-bench`` and sample its whole process tree."""
    tag = f"flower-{num_clients}-{num_cpus or 'default'}"
    json_path, weights_path, log_path = (workdir / f"{tag}{ext}" for ext in (".json", ".pt", ".log"))
    command = [str(BENCH_PYTHON), "-m", "bench.peers.flower_fedavg", "--clients", str(num_clients)]
    command += ["--rounds", str(rounds), "--seed", str(SEED), "--ray-temp", str(workdir)]
    command += ["--json", str(json_path), "--weights", str(weights_path)]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    flwr_home = workdir / "flwr-home"
    flwr_home.mkdir(exist_ok=True)
    # Ray gives each client num_cpus threads (OMP_NUM_THREADS) unless the environment already fixes
    # it: drop an inherited value, so that Flower's configurations are Flower's own.
    inherited = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env = {
        **inherited,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_HOME": str(flwr_home),  # Flower writes here, not in the home directory
    }
    with log_path.open("wb") as log:
        # A session of its own, so that a timeout can end the driver and every Ray process with it.
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        sampler = TreeMemorySampler(process.pid)
        sampler.start()
        try:
            process.wait(timeout=FLOWER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            memory = sampler.stop()
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"Flower run {tag} exited {process.returncode}:\n" + "\n".join(tail))
    states: dict[str, State] = torch.load(weights_path, weights_only=True)
    return FlowerRun(json.loads(json_path.read_text()), memory, states["first"], states["final"])
