"""RL recipe benchmark: ``python -m bench.rl``.

Per scenario, algorithm (``--algos``, the per-device policy of each) and training budget:
``fedsimenv train``'s recipe (behaviour cloning from ``optimal``, anchored PPO or SAC on the
surrogate with the ``time-to-target-shaped`` reward, best-of real-training evaluations), then
``fedsimenv compare`` of the policy against ``optimal`` and the heuristics on *real* training
over unseen seeds, plus the surrogate's prediction for the policy's own rounds (the same actions,
read from the runs' replay logs, replayed on the surrogate). Comparisons resume in ``--out``, so
reference runs are shared between budgets and reruns. Writes ``OUT/rl-SCENARIOS.md`` and ``.json``.

    python -m bench.rl --scenarios tiny,default --algos ppo,sac --timesteps 4096 --seeds 5 --out runs/bench-rl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

REFERENCES = ("optimal", "equal", "random", "greedy-channel", "proportional-fair")


def _row(scenario: str, agent: str, runs: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    from fedsimenv.experiments.summary import format_mean_std

    mine = [r for r in runs if r["agent"] == agent and r["status"] == "ok"]
    reached = [r["time_to_target_s"] for r in mine]
    return {
        "scenario": scenario,
        "agent": agent,
        "final_accuracy": format_mean_std([r["final_accuracy"] for r in mine]),
        "time_to_target_s": format_mean_std(reached),
        "reached": f"{sum(t is not None for t in reached)}/{len(mine)}",
        "mean_selected": format_mean_std([r["mean_selected"] for r in mine], 2),
        "mean_rho": format_mean_std([r["mean_rho"] for r in mine], 2),
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    from fedsimenv.experiments.compare import compare_agents, run_dir
    from fedsimenv.experiments.rl_eval import surrogate_gap_of_run
    from fedsimenv.experiments.rl_training import TrainSettings, train_policy
    from fedsimenv.scenario import load_scenario

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", default="tiny,default")
    parser.add_argument("--algos", default="ppo,sac", help="comma-separated algorithms (per-device policies)")
    parser.add_argument("--timesteps", default="4096", help="comma-separated training budgets")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=100, help="evaluation seeds (never trained on)")
    parser.add_argument("--eval-every", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-rl"))
    args = parser.parse_args(argv)
    seeds = [args.first_seed + i for i in range(args.seeds)]
    rows: list[dict[str, Any]] = []
    failed = 0
    for scenario in [s for s in args.scenarios.split(",") if s]:
        config = load_scenario(scenario)
        policies = []
        for algo in [a for a in args.algos.split(",") if a]:
            for budget in [int(t) for t in args.timesteps.split(",") if t]:
                out = args.out / f"{algo}-{scenario}-{budget}"
                started = time.perf_counter()
                if not (out / "policy.zip").exists():
                    settings = TrainSettings(algo=algo, timesteps=budget, eval_every=args.eval_every)
                    train_policy(load_scenario(config, {"trainer": "surrogate"}), settings, out)
                wall = json.loads((out / "train.json").read_text())["wall_s"]
                print(
                    f"{scenario}: trained {algo} {budget} steps in {wall:.0f} s "
                    f"({time.perf_counter() - started:.0f} s in this call)"
                )
                policies.append((f"{algo}:{out / 'policy.zip'}", budget, wall))
        agents = [p[0] for p in policies] + list(REFERENCES)
        out_cmp = args.out / f"compare-{scenario}"
        result = compare_agents(config, agents, seeds, out_cmp, workers=args.workers, resume=True)
        failed += len(result.failed)
        for name, budget, wall in policies:
            # The surrogate's prediction for the policy's own rounds (actions from the replay logs).
            gaps = [surrogate_gap_of_run(run_dir(out_cmp, name, s)) for s in seeds]
            gap = {
                "surrogate_mean_abs_gap": round(sum(g["mean_abs_gap"] for g in gaps) / len(gaps), 4),
                "surrogate_final_predicted": round(sum(g["final_predicted"] for g in gaps) / len(gaps), 4),
                "real_final": round(sum(g["final_real"] for g in gaps) / len(gaps), 4),
            }
            extra = {"timesteps": budget, "train_wall_s": round(wall), **gap}
            rows.append(_row(scenario, name, result.runs, extra))
        rows.extend(_row(scenario, a, result.runs, {}) for a in REFERENCES)
    header = (
        "| scenario | agent | timesteps | train wall (s) | final accuracy | time to 0.9 (s) | reached "
        "| mean selected | mean rho |"
    )
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['agent']} | {r.get('timesteps', '')} | {r.get('train_wall_s', '')} | "
            f"{r['final_accuracy']} | {r['time_to_target_s']} | {r['reached']} | {r['mean_selected']} "
            f"| {r['mean_rho']} |"
        )
    gaps = [r for r in rows if "surrogate_mean_abs_gap" in r]
    lines += [
        "",
        "| scenario | policy | surrogate vs real accuracy: mean abs gap per round | final predicted "
        "| final real |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['scenario']} | {r['agent']} | {r['surrogate_mean_abs_gap']} | "
        f"{r['surrogate_final_predicted']} | {r['real_final']} |"
        for r in gaps
    ]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "rl-" + args.scenarios.replace(",", "_")
    (args.out / f"{stem}.md").write_text(text, encoding="utf-8")
    (args.out / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
