"""``fedsimenv train``'s settings: :class:`TrainSettings` (the flags and their defaults, which are the
recipe of :mod:`fedsimenv.experiments.rl_training`), the allowed algorithms and vectorised envs, the
check of a settings object against them, and the scenario as the policy trains on it (the training
reward applied).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsimenv.config import ScenarioConfig
from fedsimenv.scenario import load_scenario

ALGORITHMS = ("ppo", "sac")
VEC_ENVS = ("dummy", "subproc")


@dataclass(frozen=True)
class TrainSettings:
    """``fedsimenv train``'s flags (see ``fedsimenv train --help``)."""

    algo: str = "ppo"
    policy: str = "device"
    timesteps: int = 20_000
    seed: int = 0
    num_envs: int = 1
    vec_env: str = "dummy"
    reward: str | None = "time-to-target-shaped"
    learning_rate: float = 1e-4
    n_steps: int = 512
    batch_size: int = 64
    n_epochs: int = 5
    gamma: float = 0.99
    ent_coef: float = 0.0
    clip_range: float = 0.1
    log_std_init: float = -1.6
    hidden: int = 64
    bc_episodes: int = 40
    bc_epochs: int = 40
    teacher: str = "optimal"
    anchor_coef: float = 1.0
    anchor_anneal: bool = False
    eval_every: int = 5_000
    eval_seeds: int = 2
    eval_trainer: str = "torch"
    reference_agents: tuple[str, ...] = ("optimal", "equal", "greedy-channel")
    checkpoint_every: int = 10_000
    tensorboard: str | None = None
    verbose: bool = True


def training_config(config: ScenarioConfig, settings: TrainSettings) -> ScenarioConfig:
    """The scenario as the policy trains on it (the training reward applied)."""
    if settings.reward is None or settings.reward == config.reward.name:
        return config
    return load_scenario(config, {"reward.name": settings.reward, "reward.params": {}})


def _check(settings: TrainSettings) -> None:
    from agents.rl_policy import POLICY_KINDS

    if settings.algo not in ALGORITHMS:
        raise ValueError(f"unknown --algo {settings.algo!r}; allowed values: {', '.join(ALGORITHMS)}")
    if settings.policy not in POLICY_KINDS[settings.algo]:
        allowed = ", ".join(POLICY_KINDS[settings.algo])
        raise ValueError(
            f"--policy {settings.policy!r} is not available for {settings.algo}; allowed values: {allowed}"
        )
    if settings.vec_env not in VEC_ENVS:
        raise ValueError(f"unknown --vec-env {settings.vec_env!r}; allowed values: {', '.join(VEC_ENVS)}")
    for name in ("timesteps", "num_envs", "n_steps", "batch_size", "n_epochs", "hidden", "eval_seeds"):
        if getattr(settings, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(settings, name)}")
    for name in ("bc_episodes", "bc_epochs", "eval_every", "checkpoint_every"):
        if getattr(settings, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(settings, name)}")
    if not np.isfinite(settings.anchor_coef) or settings.anchor_coef < 0:
        raise ValueError(f"--anchor-coef must be a finite number >= 0, got {settings.anchor_coef}")
    if not 0 < settings.gamma <= 1 or settings.learning_rate <= 0:
        raise ValueError("--gamma must be in (0, 1] and --learning-rate > 0")
    if settings.tensorboard is not None:
        try:
            import tensorboard  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
