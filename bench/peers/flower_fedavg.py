"""Flower's simulation engine (Ray backend) on the FedAvg-round workload of ``bench.fedavg_round``.

Runs in the benchmark's own environment (``make bench-env`` -> ``.venv-bench``), never in ``.venv``:

    .venv-bench/bin/python -m bench.peers.flower_fedavg --clients 50 --rounds 10 --json out.json \
        [--num-cpus 1] [--ray-temp DIR] [--weights states.pt]

The workload is literally ``bench.fedavg_workload``'s: the same split, initial weights, per-client
per-round sample orders and hand-written local loop (``train_client_plain``). The ``ServerApp`` runs
Flower's message-API ``FedAvg`` (weighted by ``num-examples``) with federated evaluation off and a
centralised ``evaluate_fn`` on the global test set, which Flower calls before round 1 and after each
round; the time between two calls is one round (train + aggregate + evaluate, as for the other
systems). ``--num-cpus`` sets ``client_resources.num_cpus`` (absent: Flower's default). Ray gets 2 CPUs,
no dashboard and a session directory under ``--ray-temp``.

The JSON holds the per-round times and accuracies, the time from ``run_simulation`` to the end of
round 1 (Ray and Flower start-up plus one round), versions and the torch threads the clients saw.
"""

from __future__ import annotations

import os
import shutil
import tempfile

# Before flwr is imported: Flower reads its telemetry switch and resolves its home directory (where it
# writes a source id and looks for credentials) at import time; keep both out of the user's home.
# Ray workers inherit this environment, so they import flwr with the same settings.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
_OWN_FLWR_HOME = None if "FLWR_HOME" in os.environ else tempfile.mkdtemp(prefix="fbh-")
if _OWN_FLWR_HOME is not None:
    os.environ["FLWR_HOME"] = _OWN_FLWR_HOME

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import flwr  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from bench.fedavg_workload import Workload, build_workload, global_accuracy, train_client_plain  # noqa: E402

RAY_NUM_CPUS = 2


@functools.lru_cache(maxsize=2)
def _workload(num_clients: int, seed: int) -> Workload:
    # Built once per Ray worker process (and once in the driver), as a user's dataset cache would be.
    return build_workload(num_clients, seed)


def _train(message: Message, context: Context) -> Message:
    """The ClientApp's train step: load the global weights, one local epoch, reply with the weights."""
    config = message.content["config"]
    num_clients, seed = int(config["num-clients"]), int(config["seed"])
    round_index = int(config["server-round"]) - 1
    client = int(context.node_config["partition-id"])
    workload = _workload(num_clients, seed)
    model = workload.initial_model()
    model.load_state_dict(message.content["arrays"].to_torch_state_dict())
    x, y = workload.client_x[client], workload.client_y[client]
    train_client_plain(model, x, y, workload.order(round_index, client))
    metrics = MetricRecord({"num-examples": len(y), "torch-threads": torch.get_num_threads()})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=message)


def build_client_app() -> ClientApp:
    app = ClientApp()
    # Registered by call, not as a decorator: flwr is untyped for mypy in .venv.
    app.train()(_train)
    return app


class _RoundClock:
    """Centralised evaluation that also timestamps each call (one call before round 1, one per round)."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.model = workload.initial_model()
        self.stamps_s: list[float] = []
        self.accuracies: list[float] = []
        self.client_threads = float("nan")
        self.first_state: dict[str, torch.Tensor] = {}

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        self.model.load_state_dict(arrays.to_torch_state_dict())
        accuracy = global_accuracy(self.model, self.workload.test_x, self.workload.test_y)
        self.accuracies.append(accuracy)
        self.stamps_s.append(time.perf_counter())
        if server_round == 1:  # the benchmark checks the workloads' identity on round 1's weights
            self.first_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return MetricRecord({"accuracy": accuracy})


def build_server_app(
    workload: Workload, num_rounds: int, clock: _RoundClock, final: dict[str, torch.Tensor]
) -> ServerApp:
    n = workload.num_clients

    def main(grid: Grid, context: Context) -> None:
        # Every client trains every round; federated (client-side) evaluation is off.
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(workload.initial_model().state_dict()),
            num_rounds=num_rounds,
            train_config=ConfigRecord({"num-clients": n, "seed": workload.seed}),
            evaluate_fn=clock,
        )
        final.update(result.arrays.to_torch_state_dict())
        # Sample-weighted mean over the clients of the last round (equal when they all saw the same).
        clock.client_threads = float(result.train_metrics_clientapp[num_rounds]["torch-threads"])

    app = ServerApp()
    app.main()(main)
    return app


def run(
    num_clients: int, num_rounds: int, seed: int, num_cpus: float | None, ray_temp: Path
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """One simulation; returns the JSON-able measurements and the global weights after round 1 and at
    the end (``{"first": ..., "final": ...}``)."""
    from bench.peers import flower_fedavg as peer  # the module under its import name, for pickling

    # The driver (the ServerApp and its centralised evaluation) runs one torch thread, like every
    # benchmark process; the clients get num_cpus threads from Ray.
    torch.set_num_threads(1)
    workload = _workload(num_clients, seed)
    clock = _RoundClock(workload)
    final: dict[str, torch.Tensor] = {}
    backend_config: dict[str, Any] = {
        "init_args": {"num_cpus": RAY_NUM_CPUS, "include_dashboard": False, "_temp_dir": str(ray_temp)},
    }
    if num_cpus is not None:
        backend_config["client_resources"] = {"num_cpus": num_cpus, "num_gpus": 0.0}
    start_s = time.perf_counter()
    run_simulation(
        server_app=build_server_app(workload, num_rounds, clock, final),
        client_app=peer.build_client_app(),
        num_supernodes=num_clients,
        backend_name="ray",
        backend_config=backend_config,
    )
    if ray.is_initialized():  # before the session directory is removed
        ray.shutdown()
    if len(clock.stamps_s) != num_rounds + 1:
        raise RuntimeError(f"Flower ran {len(clock.stamps_s) - 1} of {num_rounds} rounds")
    round_ms = [(b - a) * 1e3 for a, b in zip(clock.stamps_s, clock.stamps_s[1:], strict=False)]
    measurements: dict[str, Any] = {
        "flwr": flwr.__version__,
        "ray": ray.__version__,
        "torch": torch.__version__,
        "num_cpus_per_client": num_cpus,
        "ray_num_cpus": RAY_NUM_CPUS,
        "round_ms": round_ms,
        "launch_to_first_round_end_s": clock.stamps_s[1] - start_s,
        "accuracies": clock.accuracies[1:],
        "final_accuracy": clock.accuracies[-1],
        "client_torch_threads": clock.client_threads,
    }
    return measurements, {"first": clock.first_state, "final": final}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-cpus", type=float, default=None, help="client_resources.num_cpus")
    parser.add_argument("--ray-temp", type=Path, default=None, help="parent of Ray's session directory")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=None, help="save round 1's and the final state here")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(
            prefix="fbr-", dir=args.ray_temp, ignore_cleanup_errors=True
        ) as ray_temp:
            measurements, states = run(args.clients, args.rounds, args.seed, args.num_cpus, Path(ray_temp))
    finally:
        if _OWN_FLWR_HOME is not None:
            shutil.rmtree(_OWN_FLWR_HOME, ignore_errors=True)
    if args.weights is not None:
        torch.save(states, args.weights)
    args.json.write_text(json.dumps(measurements, indent=2) + "\n")


if __name__ == "__main__":
    main()
