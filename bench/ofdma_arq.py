"""First-try vs all-tries planning under packet errors: `optimal` against `optimal-arq`.

``python -m bench.ofdma_arq [SCENARIO] [SEEDS] [ROUNDS]`` (default ``wireless-controls 6 10``, the
digits surrogate trainer) prints, per agent: rounds in which ARQ re-sent an update, the largest
simulated/planned latency in them, the mean round latency and the mean rho of the selected devices.
"""

from __future__ import annotations

import sys

import numpy as np
from gymnasium import spaces

from agents import AgentContext, make_agent
from agents.optimisers import ViewAgent
from fedsimenv.env import WirelessFLEnv
from fedsimenv.scenario import load_scenario


def main(argv: list[str]) -> None:
    scenario = argv[0] if argv else "wireless-controls"
    seeds = range(int(argv[1]) if len(argv) > 1 else 6)
    rounds = int(argv[2]) if len(argv) > 2 else 10
    env = WirelessFLEnv(load_scenario(scenario, {"trainer": "surrogate", "episode.max_rounds": rounds}))
    assert isinstance(env.action_space, spaces.Box)
    context = AgentContext.from_scenario(env.config, env.action_space, system_view=env.system_view)
    columns = ["agent", "rounds", "rounds with a re-sent update", "max simulated/planned in them"]
    print("| " + " | ".join([*columns, "mean round (s)", "mean rho"]) + " |")
    print("|---|---|---|---|---|---|")
    for name in ("optimal", "optimal-arq"):
        worst, retried, latency, rho = 0.0, 0, [], []
        for seed in seeds:
            agent = make_agent(name, context, seed=0)
            assert isinstance(agent, ViewAgent)
            observation, info = env.reset(seed=seed)
            for _ in range(rounds):
                action = agent.act(observation, info)
                planned = agent.last_deadline_s
                observation, _, terminated, truncated, info = env.step(action)
                report = env.last_report
                assert report is not None
                if report.transmissions.max() > 1:
                    retried += 1
                    worst = max(worst, report.round_latency_s / planned)
                latency.append(report.round_latency_s)
                rho.append(float(report.pruning_rate[report.selected].mean()))
                if terminated or truncated:
                    break
        row = [name, str(len(latency)), str(retried), f"{worst:.4f}", f"{np.mean(latency):.4f}"]
        print("| " + " | ".join([*row, f"{np.mean(rho):.3f}"]) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
