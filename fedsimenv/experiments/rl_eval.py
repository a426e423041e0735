"""Evaluating policies on real training during and after RL training.

:func:`run_real_episode` plays one episode of a decision function on a scenario (usually with the
real torch trainer) and records what a researcher compares: return under the scenario's reward,
whether and when the target was reached, final accuracy, devices selected and pruning rates, and
every canonical action. :func:`surrogate_gap` replays those very actions on the surrogate (same
seed: same devices, channels and partition) and reports how far its predicted accuracy is from the
real one, round by round: the fidelity of the surrogate on the policy's own rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedsimenv.config import ScenarioConfig
from fedsimenv.seeding import EpisodeStreams

#: ``decide(observation, info, env) -> canonical action``.
Decide = Callable[[Mapping[str, Any], Mapping[str, Any], Any], NDArray[np.float32]]


def policy_decider(policy: Any) -> Decide:
    """A decision function from an SB3 policy over :mod:`agents.rl_features` (deterministic)."""
    from agents.rl_features import flat_features

    def decide(observation: Mapping[str, Any], info: Mapping[str, Any], env: Any) -> NDArray[np.float32]:
        features = flat_features(observation, env.system_view(), env.config.episode.max_rounds)
        action, _ = policy.predict(features, deterministic=True)
        return np.asarray(action, dtype=np.float32)

    return decide


def agent_decider(name: str) -> Callable[[Any, int], Decide]:
    """``factory(env, seed) -> decide`` for registered agent ``name`` (as ``fedsimenv compare`` builds it)."""
    from agents import make_agent
    from agents.base import AgentContext

    def factory(env: Any, seed: int) -> Decide:
        context = AgentContext.from_scenario(env.config, env.action_space, system_view=env.system_view)
        agent = make_agent(name, context, EpisodeStreams(np.random.SeedSequence(seed)).int_seed("agent"))
        agent.bind(env)

        def decide(observation: Mapping[str, Any], info: Mapping[str, Any], _: Any) -> NDArray[np.float32]:
            return np.asarray(agent.act(observation, info), dtype=np.float32)

        return decide

    return factory


def reference_summaries(
    config: ScenarioConfig, agents: Sequence[str], seeds: list[int], say: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Registered ``agents`` evaluated like a policy during training (same scenario and seeds)."""
    from fedsimenv.experiments.rl_outputs import summary_line

    references = {}
    for name in agents:
        episodes = [run_real_episode(config, s, agent_decider(name), factory=True) for s in seeds]
        references[name] = summarise(episodes)
        say(f"  reference {name} on {config.trainer} (seeds {seeds}): {summary_line(references[name])}")
    return references


def run_real_episode(
    config: ScenarioConfig, seed: int, decide: Decide | Callable[[Any, int], Decide], factory: bool = False
) -> dict[str, Any]:
    """One episode of ``decide`` on ``config`` with seed ``seed`` (``factory``: build it from the env)."""
    from fedsimenv.env import WirelessFLEnv

    env = WirelessFLEnv(config)
    maker: Any = decide
    fn: Any = maker(env, seed) if factory else decide
    obs, info = env.reset(seed=seed)
    total, done = 0.0, False
    actions: list[list[float]] = []
    accuracy: list[float] = []
    selected: list[float] = []
    rho: list[float] = []
    reached_s: float | None = None
    target = env.target_accuracy or 0.9
    while not done:
        action = fn(obs, info, env)
        actions.append(np.asarray(action, dtype=np.float64).tolist())
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        accuracy.append(float(info["accuracy"]))
        selected.append(float(info["num_selected"]))
        rho.append(float(info["mean_pruning_rate"]))
        if reached_s is None and info["accuracy"] >= target:
            reached_s = float(info["sim_time_s"])
        done = terminated or truncated
    return {
        "seed": seed,
        "return": total,
        "final_accuracy": accuracy[-1],
        "rounds": len(accuracy),
        "sim_time_s": float(info["sim_time_s"]),
        "time_to_target_s": reached_s,
        "mean_selected": float(np.mean(selected)),
        "mean_rho": float(np.mean(rho)),
        "accuracy": accuracy,
        "actions": actions,
    }


def surrogate_gap(config: ScenarioConfig, episode: Mapping[str, Any]) -> dict[str, float]:
    """Replay ``episode["actions"]`` on the surrogate (same seed); accuracy gap to the real rounds."""
    from fedsimenv.env import WirelessFLEnv

    env = WirelessFLEnv(config, trainer="surrogate")
    env.reset(seed=int(episode["seed"]))
    predicted = []
    for action in episode["actions"]:
        _, _, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
        predicted.append(float(info["accuracy"]))
        if terminated or truncated:
            break
    real = np.asarray(episode["accuracy"][: len(predicted)])
    gap = np.asarray(predicted) - real
    return {
        "rounds": float(len(gap)),
        "mean_abs_gap": float(np.mean(np.abs(gap))),
        "final_predicted": predicted[-1],
        "final_real": float(real[-1]),
    }


def summarise(episodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean return, final accuracy, reached count and mean time to target over episodes."""
    times = [e["time_to_target_s"] for e in episodes if e["time_to_target_s"] is not None]
    return {
        "return": float(np.mean([e["return"] for e in episodes])),
        "final_accuracy": float(np.mean([e["final_accuracy"] for e in episodes])),
        "reached": len(times),
        "episodes": len(episodes),
        "time_to_target_s": float(np.mean(times)) if times else None,
        "mean_selected": float(np.mean([e["mean_selected"] for e in episodes])),
        "mean_rho": float(np.mean([e["mean_rho"] for e in episodes])),
    }


def surrogate_gap_of_run(run_dir: Path, calibration: str | None = None) -> dict[str, float]:
    """:func:`surrogate_gap` for a finished run directory (its scenario, seed, actions and accuracy
    from the replay log of the newest checkpoint and ``metrics.jsonl``); ``calibration`` (a file)
    replaces the scenario's surrogate calibration."""
    import sys

    from fedsimenv.experiments.checkpoints import CHECKPOINT_DIR, newest_valid_checkpoint
    from fedsimenv.experiments.rundir import read_jsonl, read_run_meta
    from fedsimenv.scenario import load_scenario

    meta = read_run_meta(run_dir)
    checkpoint = newest_valid_checkpoint(
        run_dir / CHECKPOINT_DIR, meta["fingerprint"], lambda text: print(f"warning: {text}", file=sys.stderr)
    )
    if checkpoint is None:
        raise ValueError(f"{run_dir}: no checkpoint with a replay log")
    rows = read_jsonl(run_dir / "metrics.jsonl")
    episode = {
        "seed": int(meta["seed"]),
        "actions": [r["action"] for r in checkpoint["records"]],
        "accuracy": [float(r["accuracy"]) for r in rows][: len(checkpoint["records"])],
    }
    overrides = {} if calibration is None else {"learning.surrogate.calibration_file": calibration}
    return surrogate_gap(load_scenario(run_dir / "config.yaml", overrides), episode)
