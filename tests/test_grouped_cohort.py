"""The grouped-layout engine of batched cohort training (fedsimenv.learning.grouped).

Reference: each copy's own ``nn.Module`` forward (``torch.func.functional_call`` with that copy's
parameters), and the sequential ``torch.optim.SGD`` loop for whole cohorts.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fedsimenv.learning.cohort import (
    LocalJob,
    PhaseClock,
    SGDConfig,
    draw_orders,
    prefer_batched,
    train_batched,
    train_sequential,
)
from fedsimenv.learning.grouped import GroupedModel, UnsupportedModel, grouped_for
from fedsimenv.learning.models import build_model

CASES = [
    ("mlp", None, (1, 8, 8)),
    ("small-cnn", None, (1, 8, 8)),
    ("small-cnn", "group", (1, 8, 8)),
    ("resnet20", "none", (3, 8, 8)),
    ("resnet20", "layer", (3, 8, 8)),
    ("vgg11", "group", (3, 32, 32)),
    ("mobilenetv2", "layer", (3, 8, 8)),
]


def _stacked_params(model: nn.Module, copies: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Each copy's parameters: the model's plus independent noise, so the copies differ."""
    return {
        name: value.detach() + 0.05 * torch.randn(copies, *value.shape, generator=generator)
        for name, value in model.named_parameters()
    }


@pytest.mark.parametrize(("name", "norm", "shape"), CASES)
def test_grouped_forward_equals_each_copy_s_own_forward(
    name: str, norm: str | None, shape: tuple[int, int, int]
) -> None:
    g = torch.Generator().manual_seed(0)
    model = build_model(name, shape, 10, g, norm=norm)
    params = _stacked_params(model, 3, g)
    x = torch.randn(3, 4, *shape, generator=g)
    out = GroupedModel(model)(params, x)
    assert out.shape == (3, 4, 10)
    for k in range(3):
        expected = functional_call(model, {n: p[k] for n, p in params.items()}, (x[k],))
        torch.testing.assert_close(out[k], expected, atol=1e-4, rtol=1e-4)


def test_grouped_gradients_are_each_copy_s_own_gradients() -> None:
    g = torch.Generator().manual_seed(1)
    model = build_model("resnet20", (3, 8, 8), 10, g, norm="group")
    params = {k: v.requires_grad_(True) for k, v in _stacked_params(model, 2, g).items()}
    x, y = torch.randn(2, 5, 3, 8, 8, generator=g), torch.randint(0, 10, (2, 5), generator=g)
    logits = GroupedModel(model)(params, x)
    total = torch.stack([F.cross_entropy(logits[k], y[k]) for k in range(2)]).sum()
    grads = torch.autograd.grad(total, list(params.values()))
    for k in range(2):
        own = {n: p[k].detach().clone().requires_grad_(True) for n, p in params.items()}
        loss = F.cross_entropy(functional_call(model, own, (x[k],)), y[k])
        expected = torch.autograd.grad(loss, list(own.values()))
        for got, want in zip(grads, expected, strict=True):
            torch.testing.assert_close(got[k], want, atol=1e-5, rtol=1e-4)


class _Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x.flatten(1)), self.b(x.flatten(1))], dim=1)


def test_unsupported_models_are_refused_with_the_reason() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(UnsupportedModel, match="buffers"):
        GroupedModel(build_model("small-cnn", (1, 8, 8), 10, g, norm="batch"))
    with pytest.raises(UnsupportedModel, match="cat"):
        GroupedModel(_Concat())


def _jobs(model: nn.Module, sizes: list[int], generator: torch.Generator) -> list[LocalJob]:
    jobs = []
    for n in sizes:
        x = torch.randn(n, 1, 4, 1, generator=generator)
        y = torch.randint(0, 3, (n,), generator=generator)
        jobs.append(LocalJob(x, y, {}, draw_orders(n, 2, generator)))
    return jobs


def test_a_model_the_grouped_layout_cannot_run_falls_back_to_vmap() -> None:
    g = torch.Generator().manual_seed(0)
    model = _Concat()
    jobs = _jobs(model, [7, 12, 5], g)
    sgd = SGDConfig(learning_rate=0.1, momentum=0.9, batch_size=4)
    with pytest.raises(UnsupportedModel):
        train_batched(model, jobs, sgd, engine="grouped")
    for a, b in zip(train_sequential(model, jobs, sgd), train_batched(model, jobs, sgd), strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)


def test_unknown_engine_names_the_allowed_values() -> None:
    model = _Concat()
    jobs = _jobs(model, [4], torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="auto, grouped, vmap"):
        train_batched(model, jobs, SGDConfig(0.1, 0.0, 4), engine="fast")  # type: ignore[arg-type]


def test_auto_policy_batches_small_per_device_steps_only() -> None:
    g = torch.Generator().manual_seed(0)
    small = build_model("small-cnn", (1, 8, 8), 10, g)
    resnet = build_model("resnet20", (3, 32, 32), 10, g, norm="layer")
    assert prefer_batched(small, (1, 8, 8), 16)  # 10 MFLOP per device step: batching pays
    assert prefer_batched(resnet, (3, 32, 32), 8)  # 655 MFLOP: still pays (1.6x measured)
    assert not prefer_batched(resnet, (3, 32, 32), 32)  # 2.6 GFLOP: each device is compute-bound
    assert not prefer_batched(build_model("small-cnn", (1, 8, 8), 10, g, norm="batch"), (1, 8, 8), 16)


def test_each_model_is_traced_once_and_refusals_are_remembered() -> None:
    model = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))
    assert grouped_for(model) is grouped_for(model)
    concat = _Concat()
    for _ in range(2):  # the remembered reason is raised again, not a bare exception
        with pytest.raises(UnsupportedModel, match="cat"):
            grouped_for(concat)


def test_phase_clock_accounts_the_steps_without_changing_the_result() -> None:
    g = torch.Generator().manual_seed(1)
    model = build_model("small-cnn", (1, 8, 8), 10, g)
    jobs = [
        LocalJob(
            torch.randn(n, 1, 8, 8, generator=g),
            torch.randint(0, 10, (n,), generator=g),
            {},
            draw_orders(n, 1, g),
        )
        for n in (9, 5)
    ]
    sgd = SGDConfig(learning_rate=0.05, momentum=0.9, batch_size=4)
    clock = PhaseClock()
    timed = train_batched(model, jobs, sgd, clock=clock)
    plain = train_batched(model, jobs, sgd)
    for a, b in zip(timed, plain, strict=True):  # the clock only reads the time: bit-identical
        assert all(torch.equal(a[k], b[k]) for k in a)
    phases = {"outside", "setup", "data", "forward", "backward", "optimizer"}
    assert set(clock.seconds) == phases and all(s >= 0 for s in clock.seconds.values())
    assert clock.seconds["forward"] > 0 and clock.seconds["backward"] > 0


def _digits_like_jobs(sizes: list[int], epochs: int, g: torch.Generator) -> list[LocalJob]:
    return [
        LocalJob(
            torch.randn(n, 1, 8, 8, generator=g),
            torch.randint(0, 10, (n,), generator=g),
            {},
            draw_orders(n, epochs, g),
        )
        for n in sizes
    ]


def test_finished_devices_drop_out_so_work_is_the_sum_of_own_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(2)
    model = build_model("small-cnn", (1, 8, 8), 10, g)
    sizes, epochs, batch = [9, 40, 0, 17, 40, 3], 2, 8
    jobs = _digits_like_jobs(sizes, epochs, g)
    widths: list[int] = []
    original = GroupedModel.forward

    def spy(self: GroupedModel, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        widths.append(x.shape[0])
        return original(self, params, x)

    monkeypatch.setattr(GroupedModel, "__call__", spy)
    sgd = SGDConfig(learning_rate=0.05, momentum=0.9, batch_size=batch)
    batched = train_batched(model, jobs, sgd, "grouped")
    # Device k takes epochs * ceil(n_k / batch) steps; each step runs only the devices still training.
    own_steps = [epochs * -(-n // batch) for n in sizes]
    assert sum(widths) == sum(own_steps) == 2 * (2 + 5 + 0 + 3 + 5 + 1)
    assert widths == [sum(1 for s in own_steps if s > step) for step in range(max(own_steps))]
    # Job order is kept (the stack is sorted by step count inside), same weights as one at a time;
    # the device with no data keeps the global model.
    for a, b in zip(train_sequential(model, jobs, sgd), batched, strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
    for key, value in model.state_dict().items():
        assert torch.equal(batched[2][key], value)


@pytest.mark.parametrize("engine", ["grouped", "vmap"])
def test_a_cohort_of_one_equals_the_sequential_loop(engine: str) -> None:
    g = torch.Generator().manual_seed(3)
    model = build_model("small-cnn", (1, 8, 8), 10, g)
    jobs = _digits_like_jobs([37], 2, g)
    sgd = SGDConfig(learning_rate=0.05, momentum=0.9, batch_size=16)
    (a,), (b,) = train_sequential(model, jobs, sgd), train_batched(model, jobs, sgd, engine)  # type: ignore[arg-type]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)


def test_one_grayscale_copy_keeps_channels_last_activations() -> None:
    # One copy of a one-channel input is both NCHW and channels-last, and the convolution picks NCHW;
    # the grouped engine keeps the later layers channels-last as for K > 1 (same values either way).
    g = torch.Generator().manual_seed(4)
    model = build_model("small-cnn", (1, 8, 8), 10, g)
    grouped = GroupedModel(model)
    params = _stacked_params(model, 1, g)
    x = torch.randn(1, 4, 1, 8, 8, generator=g)
    seen: list[bool] = []
    relu = dict(model.named_modules())["features.1"]
    handle = relu.register_forward_hook(
        lambda m, i, o: seen.append(i[0].is_contiguous(memory_format=torch.channels_last))
    )
    try:
        out = grouped(params, x)
    finally:
        handle.remove()
    assert seen == [True]  # the ReLU after the first convolution gets a channels-last input
    expected = functional_call(model, {n: p[0] for n, p in params.items()}, (x[0],))
    torch.testing.assert_close(out[0], expected, atol=1e-4, rtol=1e-4)
