"""Worker processes pin one torch / BLAS thread unless FEDSIMENV_WORKER_THREADS says otherwise."""

from __future__ import annotations

import pytest

from fedsimenv.experiments import jobs
from fedsimenv.experiments.jobs import WORKER_THREADS_ENV, map_in_workers, worker_threads


def _threads_in_worker(_: int) -> tuple[int, int]:
    import torch
    from threadpoolctl import threadpool_info

    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return torch.get_num_threads(), max(blas, default=1)


def test_worker_threads_default_override_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKER_THREADS_ENV, raising=False)
    assert worker_threads() == 1
    monkeypatch.setenv(WORKER_THREADS_ENV, "3")
    assert worker_threads() == 3
    for bad in ("0", "-1", "two", ""):
        monkeypatch.setenv(WORKER_THREADS_ENV, bad)
        with pytest.raises(ValueError, match=f"{WORKER_THREADS_ENV} must be a positive integer"):
            worker_threads()
    with pytest.raises(ValueError, match=WORKER_THREADS_ENV):  # before any worker is spawned
        map_in_workers(_threads_in_worker, [0, 1], workers=2)


def test_init_worker_pins_torch_and_blas(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    before = _threads_in_worker(0)
    monkeypatch.setenv(WORKER_THREADS_ENV, "2")
    try:
        jobs._init_worker()
        assert _threads_in_worker(0) == (2, 2)
        monkeypatch.delenv(WORKER_THREADS_ENV)
        jobs._init_worker()
        assert _threads_in_worker(0) == (1, 1)
    finally:
        torch.set_num_threads(before[0])
        threadpool_limits(before[1], user_api="blas")
