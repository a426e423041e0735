"""Training an RL policy (Stable-Baselines3 PPO / SAC) on the env: ``fedsimenv train``'s engine.

The policy sees :class:`~fedsimenv.wrappers.ScaledFlatObservation` (the Dict observation scaled by its
bounds into ``Box(-1, 1)``) and acts in the canonical ``Box(-1, 1, (3N,))``. DIR receives:

* ``policy.zip``: the SB3 model (``fedsimenv run SCENARIO --agent ppo:DIR/policy.zip`` replays it);
* ``train.json``: algorithm, timesteps, seed, trainer and the observation scaling the agent needs;
* ``config.yaml``: the fully resolved scenario;
* ``learning_curve.csv`` / ``learning_curve.png``: return of every finished training episode.

Every file is written atomically. Needs the ``rl`` extra (stable-baselines3).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fedsimenv.atomic import replacing, write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.scenario import dump_scenario

ALGORITHMS = ("ppo", "sac")
VEC_ENVS = ("dummy", "subproc")


def make_rl_env(config: ScenarioConfig) -> gym.Env[Any, Any]:
    """The env as a policy trains on it: scaled flat observation, canonical action."""
    from fedsimenv.env import WirelessFLEnv
    from fedsimenv.wrappers import ScaledFlatObservation

    return ScaledFlatObservation(WirelessFLEnv(config))


class _EnvFactory:
    """Picklable env constructor (SubprocVecEnv sends it to the worker processes)."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config

    def __call__(self) -> gym.Env[Any, Any]:
        return make_rl_env(self.config)


def _algorithm(name: str, env: Any, seed: int, timesteps: int) -> Any:
    from stable_baselines3 import PPO, SAC

    if name == "ppo":
        # Short CI-sized runs need several updates: a rollout of ~1/8 of the budget, >= 64 steps.
        n_steps = 64 * int(np.clip(round(timesteps / (8 * 64 * env.num_envs)), 1, 32))
        return PPO("MlpPolicy", env, n_steps=n_steps, batch_size=64, seed=seed, device="cpu", verbose=0)
    if name == "sac":
        return SAC(
            "MlpPolicy", env, learning_starts=min(100, timesteps // 4), seed=seed, device="cpu", verbose=0
        )
    raise ValueError(f"unknown --algo {name!r}; allowed values: {', '.join(ALGORITHMS)}")


def train_policy(
    config: ScenarioConfig,
    algo: str,
    timesteps: int,
    out_dir: Path,
    seed: int = 0,
    num_envs: int = 1,
    vec_env: str = "dummy",
    overwrite: bool = False,
) -> list[dict[str, float]]:
    """Train and write DIR (module docstring); returns the learning curve rows."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    if algo not in ALGORITHMS:
        raise ValueError(f"unknown --algo {algo!r}; allowed values: {', '.join(ALGORITHMS)}")
    if vec_env not in VEC_ENVS:
        raise ValueError(f"unknown --vec-env {vec_env!r}; allowed values: {', '.join(VEC_ENVS)}")
    if timesteps < 1 or num_envs < 1:
        raise ValueError("--timesteps and --n-envs must be >= 1")
    policy_path = out_dir / "policy.zip"
    if policy_path.exists() and not overwrite:
        raise ValueError(f"{policy_path} already exists; choose another --out or pass --overwrite")

    factories = [_EnvFactory(config) for _ in range(num_envs)]
    venv = SubprocVecEnv(factories) if vec_env == "subproc" else DummyVecEnv(factories)  # type: ignore[arg-type]
    env = VecMonitor(venv)
    env.seed(seed)
    curve: list[dict[str, float]] = []

    class CurveCallback(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    curve.append(
                        {
                            "episode": len(curve) + 1,
                            "timesteps": float(self.num_timesteps),
                            "return": float(info["episode"]["r"]),
                            "length": float(info["episode"]["l"]),
                        }
                    )
            return True

    try:
        model = _algorithm(algo, env, seed, timesteps)
        model.learn(total_timesteps=timesteps, callback=CurveCallback())
        out_dir.mkdir(parents=True, exist_ok=True)
        with replacing(policy_path, ".zip") as tmp:
            model.save(tmp)
    finally:
        env.close()

    probe = make_rl_env(config)
    meta = {
        "algo": algo,
        "timesteps": timesteps,
        "seed": seed,
        "num_envs": num_envs,
        "scenario": config.name,
        "trainer": config.trainer,
        "num_devices": config.cell.num_devices,
        "observation_scaling": probe.scaling,  # type: ignore[attr-defined]
    }
    write_text_atomic(out_dir / "train.json", json.dumps(meta, indent=1) + "\n")
    write_text_atomic(out_dir / "config.yaml", dump_scenario(config.model_copy(update={"seed": seed})))
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=["episode", "timesteps", "return", "length"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(curve)
    write_text_atomic(out_dir / "learning_curve.csv", buffer.getvalue())
    _plot_curve(curve, out_dir / "learning_curve.png", f"{algo.upper()} on {config.name} ({config.trainer})")
    return curve


def _plot_curve(curve: list[dict[str, float]], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if curve:
        steps = np.array([row["timesteps"] for row in curve])
        returns = np.array([row["return"] for row in curve])
        ax.plot(steps, returns, ".", alpha=0.3, label="episode return")
        window = max(1, len(returns) // 20)
        smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=f"mean of {window}")
        ax.legend(fontsize=8)
    ax.set_xlabel("timesteps (rounds)")
    ax.set_ylabel("episode return")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with replacing(path, ".png") as tmp:
        fig.savefig(tmp)
