"""Trainers: the seam between the simulation and real learning.

A trainer owns the global model and the clients' data. Per round the env asks it to plan the selected
devices' jobs (:meth:`Trainer.plan_round`: a :class:`~fedsimenv.learning.plan.RoundPlan` with each
pruned model's exact FLOPs and upload bits, fed to the timing plane, and its masks), then hands the
plan back with the devices that arrived in time (:meth:`Trainer.train_round`), which are trained and
aggregated. Nothing is kept inside the trainer between the two calls. The real torch trainer here and
the surrogate (:mod:`fedsimenv.learning.surrogate`) share the interface of
:mod:`fedsimenv.learning.trainer_base` (re-exported here).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from fedsimenv.config import LearningConfig
from fedsimenv.learning.aggregation import AGGREGATORS, buffered_async_update
from fedsimenv.learning.cohort import (
    LocalJob,
    SGDConfig,
    draw_orders,
    prefer_batched,
    train_batched,
    train_sequential,
)
from fedsimenv.learning.data import (
    ArrayDataset,
    IntArray,
    device_test_split,
)
from fedsimenv.learning.models import build_model
from fedsimenv.learning.partition import client_partition, load_configured_dataset
from fedsimenv.learning.plan import DeviceJob, LearningResult, ModelCost, RoundPlan, model_cost
from fedsimenv.learning.pruning import PRUNING_METHODS, Masks, count_parameters
from fedsimenv.learning.quantisation import compressed_bits, quantised_upload
from fedsimenv.learning.strategy import TrainingStrategy
from fedsimenv.learning.topk import topk_correct
from fedsimenv.learning.trainer_base import TRAINERS, Trainer
from fedsimenv.seeding import EpisodeStreams

__all__ = ["TOP_K", "TRAINERS", "TorchTrainer", "Trainer"]

#: ``metrics.jsonl`` logs ``top5_accuracy`` (the global model's top-5 on the global test set) for
#: tasks with more classes than this.
TOP_K = 5


def _resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        warnings.warn("learning.device is 'cuda' but CUDA is not available; using the CPU", stacklevel=3)
        return torch.device("cpu")
    return torch.device(requested)


@TRAINERS.register("torch")
class TorchTrainer(Trainer):
    """Real PyTorch training: local SGD on each device's masked model, aggregation, global test.

    Dataset, partition, model (and its norm), pruning method, aggregation rule and the local-training
    path all come from the scenario's ``learning`` section. Pruning masks are computed from the
    current global weights (data-driven criteria use the device's first local batch); pruned entries
    are held at zero during local training. The arrived devices train together in one batched
    computation when ``cohort`` allows (``auto``: :func:`~fedsimenv.learning.cohort.prefer_batched`),
    else one after another; both paths give the same weights up to float rounding.
    """

    supports_async = True

    def __init__(self, config: LearningConfig, num_devices: int) -> None:
        super().__init__(config, num_devices)
        self.device = _resolve_device(config.device)
        self.pruner = PRUNING_METHODS.get(config.pruning)()
        self.aggregate = AGGREGATORS.get(config.aggregation)
        self._data = load_configured_dataset(config)
        self._model: torch.nn.Module | None = None
        self.strategy: TrainingStrategy | None = None

    def use_strategy(self, strategy: TrainingStrategy | None) -> None:
        """Install a server-side :class:`~fedsimenv.learning.strategy.TrainingStrategy` (literature
        algorithms that choose masks themselves); it takes effect from the next ``reset``."""
        self.strategy = strategy

    def reset(self, streams: EpisodeStreams) -> LearningResult:
        cfg = self.config
        split_rng = streams.numpy("partition")
        # The same split and partition as the surrogate's (one implementation, one stream order).
        train, self.test, parts = client_partition(self._data, cfg, self.num_devices, split_rng)
        self.clients: list[ArrayDataset] = [train.subset(p) for p in parts]
        self._num_samples = np.array([len(c) for c in self.clients], dtype=np.int64)
        self._client_x = [torch.from_numpy(c.x).to(self.device) for c in self.clients]
        self._client_y = [torch.from_numpy(c.y).to(self.device) for c in self.clients]
        self.device_tests: list[IntArray] = []
        if cfg.partition.per_device_test:
            ratio = cfg.test_fraction / (1.0 - cfg.test_fraction)
            self.device_tests = [
                device_test_split(
                    self.test.y, c.y, max(1, round(ratio * len(c))), train.num_classes, split_rng
                )
                for c in self.clients
            ]
        self._generator = torch.Generator().manual_seed(streams.torch_seed("training"))
        self.input_shape: tuple[int, int, int] = tuple(train.x.shape[1:])
        self._model = build_model(
            cfg.model, self.input_shape, train.num_classes, self._generator, self.device, norm=cfg.norm
        )
        self.total_params = count_parameters(self._model)
        self.pruner.reset()
        self._test_x = torch.from_numpy(self.test.x).to(self.device)
        self._test_y = torch.from_numpy(self.test.y).to(self.device)
        if self.strategy is not None:
            self.strategy.reset(self)
        return self._result(0)

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            raise RuntimeError("call reset() before using the trainer")
        return self._model

    @property
    def num_samples(self) -> NDArray[np.int64]:
        return self._num_samples

    @property
    def generator(self) -> torch.Generator:
        """The episode's torch stream (strategies draw from it, never from a global RNG)."""
        return self._generator

    def client_data(self, device: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Device ``device``'s local training inputs and labels (on the model's device)."""
        return self._client_x[device], self._client_y[device]

    def exclude_labels(self, labels: Sequence[int]) -> None:
        """Remove every local training sample with a label in ``labels`` from the devices' data for
        the rest of the episode (federated unlearning of a class); ``num_samples`` follows."""
        drop = torch.tensor(sorted(int(c) for c in labels), dtype=torch.long)
        for k in range(self.num_devices):
            y = self._client_y[k]
            keep = ~torch.isin(y, drop.to(y.device))
            self._client_x[k], self._client_y[k] = self._client_x[k][keep], y[keep]
            self._num_samples[k] = int(keep.sum())

    def download_bits(self) -> float:
        return float(self.total_params * self.config.bits_per_param)

    def cost_at(self, rho: float) -> ModelCost:
        masks: Masks = {}
        if rho > 0:
            # A throwaway generator: a cost query must not move the episode's random stream.
            size = self.config.batch_size
            batch = (self._client_x[0][:size], self._client_y[0][:size])
            masks = self.pruner.masks(self.model, float(rho), torch.Generator().manual_seed(0), batch)
        cost = model_cost(
            self.model, self.input_shape, masks, self.config.bits_per_param, self.pruner.sparse_index_overhead
        )
        # as plan_round charges it: a server-side mask means the device downloads its pruned model
        return (
            replace(cost, download_bits=cost.upload_bits) if masks and not self.pruner.needs_batch else cost
        )

    def plan_round(
        self,
        pruning_rate: Mapping[int, float],
        *,
        spans_rounds: bool = False,
        upload_value_bits: Mapping[int, int] | None = None,
    ) -> RoundPlan:
        strategy = self.strategy
        jobs: dict[int, DeviceJob] = {}
        for device, rho in pruning_rate.items():
            masks: Masks = {}
            # rho = 0 always means the unpruned model.
            chosen = strategy.masks(self, device, float(rho)) if strategy is not None and rho > 0 else None
            if chosen is not None:
                masks = chosen
            elif rho > 0:
                size = self.config.batch_size
                batch = (self._client_x[device][:size], self._client_y[device][:size])
                masks = self.pruner.masks(self.model, float(rho), self._generator, batch)
            masks = {k: m.to(self.device) for k, m in masks.items()}
            cost = strategy.model_cost(self, int(device), masks) if strategy is not None else None
            if cost is None:
                sparse = strategy.sparse_index_overhead if chosen is not None and strategy else None
                sparse = self.pruner.sparse_index_overhead if sparse is None else sparse
                cost = model_cost(self.model, self.input_shape, masks, self.config.bits_per_param, sparse)
                # A server-side mask (strategy, or a criterion that reads no device data) means the
                # device downloads only its pruned model, mask included; a data-driven criterion is
                # computed on the device, which then needs the full model (download_bits None).
                if masks and (chosen is not None or not self.pruner.needs_batch):
                    cost = replace(cost, download_bits=cost.upload_bits)
            width = None if upload_value_bits is None else upload_value_bits.get(int(device))
            if width is not None:
                sparse = strategy.sparse_index_overhead if chosen is not None and strategy else None
                sparse = self.pruner.sparse_index_overhead if sparse is None else sparse
                shapes = {name: p.shape for name, p in self.model.named_parameters()}
                cost = replace(cost, upload_bits=compressed_bits(shapes, masks, int(width), sparse))
            jobs[int(device)] = DeviceJob(int(device), float(rho), cost, masks, upload_value_bits=width)
        if spans_rounds:
            # One snapshot of the global model, shared by every job that starts from it.
            snapshot = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            jobs = {k: replace(job, start_state=snapshot) for k, job in jobs.items()}
        return RoundPlan(jobs)

    def train_round(self, plan: RoundPlan, arrived: Sequence[int]) -> LearningResult:
        jobs = plan.jobs_of(arrived)
        previous = (
            {k: v.detach().clone() for k, v in self.model.state_dict().items()} if self.strategy else {}
        )
        if jobs:
            start = self.strategy.broadcast_state(self) if self.strategy is not None else None
            local = self.model
            if start is not None:
                local = copy.deepcopy(self.model)
                local.load_state_dict(start)
            trained = self.strategy.local_training(self, local, jobs) if self.strategy is not None else None
            states = self._train(local, self._local_jobs(jobs)) if trained is None else trained
            global_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.strategy is not None:
                states = self.strategy.uploaded_states(
                    self,
                    [job.device for job in jobs],
                    global_state if start is None else start,
                    states,
                    [job.masks for job in jobs],
                    value_bits=[job.upload_value_bits for job in jobs],
                )
            if self.strategy is None or not self.strategy.quantises_uploads:
                base = global_state if start is None else start
                params = {name for name, _ in self.model.named_parameters()}
                states = [
                    quantised_upload(base, state, job.upload_value_bits, self._generator, job.masks, params)
                    for state, job in zip(states, jobs, strict=True)
                ]
            weights = [float(self._num_samples[job.device]) for job in jobs]
            self.model.load_state_dict(
                self.aggregate(global_state, states, [job.masks for job in jobs], weights)
            )
        self.pruner.after_round(self.model)
        server_time_s = 0.0
        if self.strategy is not None:
            self.strategy.after_round(self, [job.device for job in jobs], previous)
            server_time_s = self.strategy.server_time_s()
        return self._result(len(jobs), server_time_s)

    def train_async(self, jobs: Sequence[DeviceJob], staleness: Sequence[int]) -> LearningResult:
        if self.strategy is not None:
            # Its hooks (in-round training, after-round schedule) act between synchronous rounds.
            raise ValueError(
                f"{type(self.strategy).__name__} (a server-side training strategy) needs synchronous "
                "rounds; protocol.name 'async' is not supported with it"
            )
        unstarted = [job.device for job in jobs if job.start_state is None]
        if unstarted:
            raise ValueError(f"devices {unstarted}: jobs planned without spans_rounds=True")
        # Jobs that downloaded the same global model train together from it.
        groups: dict[int, list[DeviceJob]] = {}
        for job in jobs:
            groups.setdefault(id(job.start_state), []).append(job)
        order: list[DeviceJob] = []
        states: list[dict[str, torch.Tensor]] = []
        params = {name for name, _ in self.model.named_parameters()}
        for group in groups.values():
            local = copy.deepcopy(self.model)
            start = dict(group[0].start_state or {})
            local.load_state_dict(start)
            trained = self._train(local, self._local_jobs(group))
            states.extend(
                quantised_upload(start, state, job.upload_value_bits, self._generator, job.masks, params)
                for state, job in zip(trained, group, strict=True)
            )
            order.extend(group)
        if order:
            tau = {job.device: int(t) for job, t in zip(jobs, staleness, strict=True)}
            global_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(
                buffered_async_update(
                    global_state,
                    [dict(job.start_state or {}) for job in order],
                    states,
                    [job.masks for job in order],
                    [float(self._num_samples[job.device]) for job in order],
                    [tau[job.device] for job in order],
                )
            )
        self.pruner.after_round(self.model)
        return self._result(len(order))

    def state_dict(self) -> dict[str, Any]:
        # A fresh optimiser is built for each local training, so the weights and the generator that
        # drives pruning and batch order are the whole state carried between synchronous rounds.
        # (Async jobs in flight are not captured: checkpoints are off under the async protocol.)
        return {
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "generator": self._generator.get_state(),
            "pruner": self.pruner.state_dict(),  # criteria that track training (movement, gradual)
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self._generator.set_state(state["generator"])
        self.pruner.load_state_dict(state.get("pruner", {}))

    def _local_jobs(self, jobs: Sequence[DeviceJob]) -> list[LocalJob]:
        """The local-training work of planned ``jobs`` (their data, masks and batch orders)."""
        epochs = self.config.local_epochs
        return [
            LocalJob(
                x=self._client_x[job.device],
                y=self._client_y[job.device],
                masks=job.masks,
                orders=draw_orders(int(self._num_samples[job.device]), epochs, self._generator),
            )
            for job in jobs
        ]

    def _train(self, model: torch.nn.Module, jobs: Sequence[LocalJob]) -> Sequence[dict[str, torch.Tensor]]:
        """Run ``jobs`` from ``model``'s weights, batched when the cohort allows it."""
        cfg = self.config
        sgd = SGDConfig(cfg.learning_rate, cfg.momentum, cfg.batch_size)
        batched = cfg.cohort == "batched" or (
            cfg.cohort == "auto" and prefer_batched(model, self.input_shape, cfg.batch_size, self.device)
        )
        return (train_batched if batched else train_sequential)(model, jobs, sgd)

    def _result(self, num_trained: int, server_time_s: float = 0.0) -> LearningResult:
        accuracy, loss, top5 = self._evaluate_global()
        device_accuracy = tuple(self.evaluate_device(k) for k in range(len(self.device_tests)))
        # Top-5 on tasks with over 5 classes (a strategy's own metrics come after and may refine it).
        extra = {} if top5 is None else {"top5_accuracy": top5}
        extra |= self.strategy.metrics(self) if self.strategy is not None else {}
        return LearningResult(accuracy, loss, num_trained, device_accuracy, server_time_s, extra)

    def evaluate(self) -> tuple[float, float]:
        """Accuracy and mean cross-entropy of the global model on the global test set."""
        accuracy, loss, _ = self._evaluate_global()
        return accuracy, loss

    @torch.no_grad()
    def _evaluate_global(self) -> tuple[float, float, float | None]:
        """:meth:`evaluate` and, when the task has over ``TOP_K`` classes, the top-5 accuracy (same
        logits; ``None`` otherwise: with 5 classes or fewer it is 1 by definition)."""
        self.model.eval()
        logits = self.model(self._test_x)
        loss = float(F.cross_entropy(logits, self._test_y))
        accuracy = float((logits.argmax(dim=1) == self._test_y).float().mean())
        top = None
        if logits.shape[1] > TOP_K:
            top = float(topk_correct(logits, self._test_y, TOP_K).float().mean())
        return accuracy, loss, top

    @torch.no_grad()
    def evaluate_device(self, device: int) -> float:
        """Global-model accuracy on ``device``'s own test split (``partition.per_device_test``)."""
        index = torch.from_numpy(self.device_tests[device]).to(self.device)
        self.model.eval()
        logits = self.model(self._test_x[index])
        return float((logits.argmax(dim=1) == self._test_y[index]).float().mean())
