"""Training an RL policy (Stable-Baselines3 PPO / SAC) on the env: ``fedsimenv train``'s engine.

The recipe (:class:`~fedsimenv.experiments.rl_settings.TrainSettings` defaults):

1. the policy sees :mod:`agents.rl_features` (scale-free per-device features of the coming round;
   no fitted normalisation to save: the transform is fixed and versioned in ``train.json``) and acts
   in the canonical ``Box(-1, 1, (3N,))``; ``--policy device`` (the default) is the
   permutation-equivariant :class:`agents.rl_policy.DeviceSetPolicy` (PPO) or
   :class:`agents.rl_sac_policy.DeviceSetSACPolicy` (SAC), ``mlp`` SB3's flat MLP;
2. warm start by behaviour cloning from ``optimal`` (:mod:`fedsimenv.experiments.rl_imitation`);
3. PPO (or SAC) fine-tuning on the training env (the surrogate, usually) with the episodic
   ``time-to-target-shaped`` reward, anchored to the behaviour-cloned policy by a KL penalty
   (``anchor_coef``, :mod:`fedsimenv.experiments.rl_anchor`, :mod:`~fedsimenv.experiments.rl_anchor_sac`)
   so that it does not drift away from the teacher as timesteps grow;
4. every ``eval_every`` steps (and before the first), the deterministic policy runs on *real*
   training (``eval_trainer``) over held-out seeds; the best of these evaluations is ``policy.zip``.

DIR receives: ``policy.zip`` (the best model by real-training evaluation; the last one when
evaluation is off), ``final_policy.zip``, ``checkpoints/step_*.zip`` (``step_0``: the
behaviour-cloned start), ``train.json`` (algorithm, policy kind and sizes, features version,
settings, evaluations), ``config.yaml``,
``learning_curve.csv`` (surrogate episodes), ``evaluations.csv`` (real-training evaluations),
``learning_curve.png``, ``sb3_log/progress.csv`` (SB3's logger) and TensorBoard logs when asked.
Policies load without unpickling (:func:`agents.rl_policy.load_policy`). Needs the ``rl`` extra.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from fedsimenv.atomic import replacing
from fedsimenv.config import ScenarioConfig
from fedsimenv.experiments.rl_outputs import summary_line, write_outputs
from fedsimenv.experiments.rl_settings import ALGORITHMS, VEC_ENVS, TrainSettings, _check, training_config
from fedsimenv.scenario import load_scenario

#: Seeds used by training-time evaluation and behaviour cloning are offset from the training seed by
#: these, so that they never meet the training episodes (nor the usual evaluation seeds 0..99).
EVAL_SEED_OFFSET = 10_000
BC_SEED_OFFSET = 20_000
#: SAC's entropy coefficient: SB3's automatic tuning (toward entropy -3N), started at 0.1 instead of 1.
SAC_ENT_COEF = "auto_0.1"

# The settings live in rl_settings (the CLI and the outputs need them without the training engine);
# they stay importable from here.
__all__ = [
    "ALGORITHMS",
    "BC_SEED_OFFSET",
    "EVAL_SEED_OFFSET",
    "SAC_ENT_COEF",
    "VEC_ENVS",
    "TrainSettings",
    "make_rl_env",
    "train_policy",
    "training_config",
]


def make_rl_env(config: ScenarioConfig) -> gym.Env[Any, Any]:
    """The env as a policy trains on it: per-device features, canonical action."""
    from agents.rl_features import DeviceFeatureObservation
    from fedsimenv.env import WirelessFLEnv

    return DeviceFeatureObservation(WirelessFLEnv(config))


class _EnvFactory:
    """Picklable env constructor (SubprocVecEnv sends it to the worker processes)."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config

    def __call__(self) -> gym.Env[Any, Any]:
        return make_rl_env(self.config)


def _algorithm(settings: TrainSettings, env: Any) -> Any:
    from agents.rl_policy import DeviceSetPolicy
    from agents.rl_sac_policy import DeviceSetSACPolicy
    from fedsimenv.experiments.rl_anchor import AnchoredPPO
    from fedsimenv.experiments.rl_anchor_sac import AnchoredSAC

    tb = settings.tensorboard
    if settings.algo == "ppo":
        policy_kwargs: dict[str, Any] = {"log_std_init": settings.log_std_init}
        if settings.policy == "device":
            policy_kwargs["hidden"] = settings.hidden
        else:
            policy_kwargs["net_arch"] = [settings.hidden, settings.hidden]
        return AnchoredPPO(
            DeviceSetPolicy if settings.policy == "device" else "MlpPolicy",
            env,
            anchor_coef=settings.anchor_coef,
            learning_rate=settings.learning_rate,
            n_steps=settings.n_steps,
            batch_size=settings.batch_size,
            n_epochs=settings.n_epochs,
            gamma=settings.gamma,
            ent_coef=settings.ent_coef,
            clip_range=settings.clip_range,
            policy_kwargs=policy_kwargs,
            tensorboard_log=tb,
            seed=settings.seed,
            device="cpu",
            verbose=0,
        )
    # SAC: with a behaviour-cloned actor the uniform random warm-up (SB3 plays `action_space.sample()`
    # until `learning_starts`) is cut to one batch, so few of the buffer's first transitions are
    # `random`'s schedules and the cloned actor acts from then on; the entropy coefficient is tuned from a
    # small start so that it does not swamp the cloned actor at once; the buffer holds the whole run
    # (up to 200k transitions: ~0.3 GB at N = 20).
    cloned = settings.bc_episodes > 0
    return AnchoredSAC(
        DeviceSetSACPolicy if settings.policy == "device" else "MlpPolicy",
        env,
        anchor_coef=settings.anchor_coef,
        learning_rate=settings.learning_rate,
        buffer_size=max(1_000, min(settings.timesteps, 200_000)),
        batch_size=settings.batch_size,
        gamma=settings.gamma,
        learning_starts=settings.batch_size if cloned else min(100, settings.timesteps // 4),
        ent_coef=SAC_ENT_COEF,
        policy_kwargs=_policy_kwargs(settings),
        tensorboard_log=tb,
        seed=settings.seed,
        device="cpu",
        verbose=0,
    )


def _policy_kwargs(settings: TrainSettings) -> dict[str, Any]:
    """What :func:`agents.rl_policy.build_policy` needs to rebuild the policy (plain JSON)."""
    if settings.algo == "ppo" and settings.policy == "device":
        return {"hidden": settings.hidden, "log_std_init": settings.log_std_init}
    if settings.algo == "sac" and settings.policy == "device":
        return {"hidden": settings.hidden}
    kwargs: dict[str, Any] = {"net_arch": [settings.hidden, settings.hidden]}
    if settings.algo == "ppo":
        kwargs["log_std_init"] = settings.log_std_init
    return kwargs


def train_policy(  # noqa: C901 - the callbacks are closures over the run state
    config: ScenarioConfig,
    settings: TrainSettings,
    out_dir: Path,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and write DIR (module docstring); returns ``train.json``'s content."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    from agents.rl_features import FEATURES_VERSION
    from fedsimenv.experiments.rl_eval import (
        policy_decider,
        reference_summaries,
        run_real_episode,
        summarise,
    )

    _check(settings)
    say = log if settings.verbose else (lambda _: None)
    policy_path = out_dir / "policy.zip"
    if policy_path.exists() and not overwrite:
        raise ValueError(f"{policy_path} already exists; choose another --out or pass --overwrite")
    train_config = training_config(config, settings)
    eval_config = load_scenario(train_config, {"trainer": settings.eval_trainer})
    eval_seeds = [settings.seed + EVAL_SEED_OFFSET + i for i in range(settings.eval_seeds)]
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    references = (
        reference_summaries(eval_config, settings.reference_agents, eval_seeds, say)
        if settings.eval_every > 0
        else {}
    )

    factories = [_EnvFactory(train_config) for _ in range(settings.num_envs)]
    venv = SubprocVecEnv(factories) if settings.vec_env == "subproc" else DummyVecEnv(factories)  # type: ignore[arg-type]
    env = VecMonitor(venv)
    env.seed(settings.seed)
    curve: list[dict[str, float]] = []
    evaluations: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -np.inf}
    bc_info: dict[str, Any] = {}
    probe: dict[str, Any] = {}  # the teacher's visited features: where drift from the clone is measured

    def evaluate(model: Any, steps: int) -> None:
        episodes = [run_real_episode(eval_config, s, policy_decider(model.policy)) for s in eval_seeds]
        row = {"timesteps": steps, "wall_s": time.perf_counter() - started, **summarise(episodes)}
        if getattr(model, "reference", None) is not None and "features" in probe:
            row["kl_to_clone"] = model.kl_to_reference(probe["features"])
        evaluations.append(row)
        better = row["return"] > best["score"]
        if better:
            best["score"] = row["return"]
            best["timesteps"] = steps
            with replacing(policy_path, ".zip") as tmp:
                model.save(tmp)
        note = " (best so far)" if better else ""
        say(f"  eval on {settings.eval_trainer} at {steps} steps: {summary_line(row)}{note}")

    class Progress(BaseCallback):
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
            steps = self.num_timesteps
            if settings.anchor_anneal:  # linear decay to 0 at the last step: free fine-tuning at the end
                model.anchor_coef = settings.anchor_coef * max(0.0, 1.0 - steps / settings.timesteps)
            if settings.checkpoint_every and steps % settings.checkpoint_every < self.training_env.num_envs:
                (out_dir / "checkpoints").mkdir(exist_ok=True)
                with replacing(out_dir / "checkpoints" / f"step_{steps}.zip", ".zip") as tmp:
                    self.model.save(tmp)
            if settings.eval_every and steps % settings.eval_every < self.training_env.num_envs:
                recent = [row["return"] for row in curve[-20:]]
                mean = np.mean(recent) if recent else float("nan")
                say(
                    f"step {steps}/{settings.timesteps}: {len(curve)} episodes, surrogate return (last 20) "
                    f"{mean:.3f}, {time.perf_counter() - started:.0f} s"
                )
                evaluate(self.model, steps)
            return True

    try:
        model = _algorithm(settings, env)
        formats = ["csv"] + (["tensorboard"] if settings.tensorboard else [])
        model.set_logger(configure(str(out_dir / "sb3_log"), formats))
        if settings.bc_episodes > 0:
            bc_info, probe["features"] = _warm_start(model, config, train_config, settings)
            say(
                f"behaviour cloning from {settings.teacher}: {bc_info['transitions']} transitions, actor "
                f"MSE {bc_info['actor_mse']:.4f}, teacher return on the training env "
                f"{bc_info['teacher_return']:.3f}"
            )
            # The clone is the anchor (when anchor_coef > 0) and the point drift is measured from.
            model.freeze_reference()
            if settings.algo == "sac":
                bc_info["target_entropy"] = model.hold_entropy_at_reference(probe["features"])
                say(f"SAC entropy target: the clone's entropy, {bc_info['target_entropy']:.1f}")
            if settings.checkpoint_every:  # step_0.zip: the clone, to compare fine-tuning against
                (out_dir / "checkpoints").mkdir(exist_ok=True)
                with replacing(out_dir / "checkpoints" / "step_0.zip", ".zip") as tmp:
                    model.save(tmp)
            if settings.anchor_coef > 0:
                say(
                    f"{settings.algo.upper()} fine-tuning anchored to the cloned policy: KL coefficient "
                    f"{settings.anchor_coef}"
                )
        elif settings.anchor_coef > 0:
            say(
                f"no behaviour cloning (--bc-episodes 0): nothing to anchor to, plain {settings.algo.upper()}"
            )
        if settings.eval_every > 0:
            evaluate(model, 0)
        model.learn(total_timesteps=settings.timesteps, callback=Progress())
        with replacing(out_dir / "final_policy.zip", ".zip") as tmp:
            model.save(tmp)
        if settings.eval_every > 0 and (
            not evaluations or evaluations[-1]["timesteps"] != model.num_timesteps
        ):
            evaluate(model, model.num_timesteps)
        if settings.eval_every == 0:
            with replacing(policy_path, ".zip") as tmp:
                model.save(tmp)
    finally:
        env.close()

    meta = {
        "algo": settings.algo,
        "policy": settings.policy,
        "policy_kwargs": _policy_kwargs(settings),
        "features": FEATURES_VERSION,
        "timesteps": settings.timesteps,
        "seed": settings.seed,
        "num_envs": settings.num_envs,
        "scenario": config.name,
        "trainer": train_config.trainer,
        "reward": train_config.reward.name,
        "num_devices": config.cell.num_devices,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()},
        "behaviour_cloning": bc_info,
        "anchor": {
            "coef": settings.anchor_coef,
            "anneal": settings.anchor_anneal,
            "active": bool(getattr(model, "reference", None) is not None and settings.anchor_coef > 0),
            "note": "kl_to_clone in evaluations: mean KL(policy || clone) on the teacher's states",
        },
        "best_timesteps": best.get("timesteps"),
        "evaluation_seeds": eval_seeds,
        "evaluations": evaluations,
        "references": references,
        "wall_s": time.perf_counter() - started,
    }
    write_outputs(out_dir, meta, train_config, settings, curve, evaluations, references)
    return meta


def _warm_start(
    model: Any, config: ScenarioConfig, train_config: ScenarioConfig, settings: TrainSettings
) -> tuple[dict[str, Any], Any]:
    """Behaviour cloning from the teacher (:mod:`fedsimenv.experiments.rl_imitation`); returns its
    summary and the demonstrations' features (a tensor)."""
    import torch

    from fedsimenv.experiments.rl_imitation import behaviour_clone, collect_demonstrations, merge

    # Episodes of the training reward (they end at its target: actor and critic targets) and half as
    # many (at least one) of the scenario's own length (the states after the target: actor only).
    bc_seed = settings.seed + BC_SEED_OFFSET
    episodic = collect_demonstrations(
        train_config, settings.teacher, settings.bc_episodes, bc_seed, settings.gamma
    )
    full_length = collect_demonstrations(
        load_scenario(config, {"trainer": train_config.trainer}),
        settings.teacher,
        max(1, settings.bc_episodes // 2),
        bc_seed + settings.bc_episodes,
        settings.gamma,
        value_targets=False,
    )
    data = merge([episodic, full_length])
    log_std_target = settings.log_std_init if settings.algo == "sac" else None
    losses = behaviour_clone(
        model.policy, data, settings.bc_epochs, settings.seed, log_std_target=log_std_target
    )
    info = {
        "transitions": len(data.features),
        "teacher_return": float(np.mean(episodic.episode_returns)),
        **losses,
    }
    return info, torch.as_tensor(data.features)
