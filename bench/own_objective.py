"""Each optimiser's own objective, realised in the simulator, against ``equal`` (docs/optimisation.md).

``python -m bench.own_objective [SCENARIOS] [AGENTS] [ROUNDS] [SEEDS]`` prints a Markdown table.
Every scenario runs with the digits surrogate's learning settings (``trainer: surrogate``; only the
network, channel and devices of the scenario matter to the objectives). Objectives: ``optimal`` and
``optimal-cvx``: J at the default deadline with late devices counted as excluded; ``min-max-latency``:
mean round latency. Lower is better.
"""

from __future__ import annotations

import sys

import numpy as np
from gymnasium import spaces

from agents import AgentContext, make_agent
from agents.optimisers import default_deadline_s
from fedsimenv.env import WirelessFLEnv
from fedsimenv.scenario import builtin_scenarios, load_scenario


def realised(env: WirelessFLEnv, agent_name: str, seeds: range, rounds: int) -> tuple[float, float]:
    """Mean over rounds and seeds of (round latency, J at the default deadline, late = excluded)."""
    assert isinstance(env.action_space, spaces.Box)
    latencies, objectives = [], []
    for seed in seeds:
        context = AgentContext.from_scenario(env.config, env.action_space, system_view=env.system_view)
        agent = make_agent(agent_name, context, seed=0)
        agent.bind(env)
        observation, info = env.reset(seed=seed)
        agent.reset(info)
        for _ in range(rounds):
            view = env.system_view()
            deadline = default_deadline_s(view, 1.0)
            weight = view.num_samples / view.num_samples.sum()
            observation, _, terminated, truncated, info = env.step(agent.act(observation, info))
            report = env.last_report
            assert report is not None
            finish = report.upload_finish_s - report.start_time_s
            on_time = report.arrived & (finish <= deadline * (1 + 1e-9))
            gamma = max(1.0, view.rho_max)
            objectives.append(
                float(
                    np.sum(weight[on_time] * report.pruning_rate[on_time]) + gamma * np.sum(weight[~on_time])
                )
            )
            latencies.append(report.round_latency_s)
            if terminated or truncated:
                break
    return float(np.mean(latencies)), float(np.mean(objectives))


def main(argv: list[str]) -> None:
    scenarios = argv[0].split(",") if argv else builtin_scenarios()
    agents = argv[1].split(",") if len(argv) > 1 else ["optimal", "optimal-cvx", "min-max-latency"]
    rounds = int(argv[2]) if len(argv) > 2 else 10
    seeds = range(int(argv[3]) if len(argv) > 3 else 3)
    learning = load_scenario("default").learning.model_dump(mode="json")
    print("| scenario | agent | objective | agent's value | equal's value | beaten by equal |")
    print("|---|---|---|---|---|---|")
    for name in scenarios:
        env = WirelessFLEnv(load_scenario(name, {"trainer": "surrogate", "learning": learning}))
        equal_latency, equal_objective = realised(env, "equal", seeds, rounds)
        for agent in agents:
            latency, objective = realised(env, agent, seeds, rounds)
            if agent == "min-max-latency":
                mine, theirs, what = latency, equal_latency, "mean round latency (s)"
            else:
                mine, theirs, what = objective, equal_objective, "J at the default deadline (late = excluded)"
            verdict = "YES" if theirs < mine else "no"
            print(f"| {name} | {agent} | {what} | {mine:.4f} | {theirs:.4f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
