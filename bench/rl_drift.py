"""How far saved PPO policies drifted from a reference (the cloned start): ``python -m bench.rl_drift``.

The probe states are those of ``--episodes`` episodes of ``optimal`` on the scenario's surrogate
(seeds ``--seed``..; the scenario's episode length), i.e. where the teacher goes. Per policy: the
mean over the states of KL(policy || reference) (:func:`fedsimenv.experiments.rl_anchor.gaussian_kl`)
and the mean |deterministic action - reference action| (canonical units, clipped to [-1, 1]).

    python -m bench.rl_drift default runs/ppo-default-100k/policy.zip \\
        runs/ppo-default-100k/checkpoints/step_20000.zip runs/ppo-default-100k/final_policy.zip
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    import torch

    from agents.rl_policy import load_policy
    from fedsimenv.experiments.rl_anchor import gaussian_kl
    from fedsimenv.experiments.rl_imitation import collect_demonstrations
    from fedsimenv.scenario import load_scenario

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario")
    parser.add_argument("reference", type=Path, help="policy.zip of the reference (train.json beside it)")
    parser.add_argument("policies", type=Path, nargs="+", help="policy zips (train.json beside each)")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=30_000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = load_scenario(args.scenario, {"trainer": "surrogate"})
    n = config.cell.num_devices
    demo = collect_demonstrations(config, "optimal", args.episodes, args.seed, 0.99, value_targets=False)
    x = torch.as_tensor(demo.features)

    def gaussian(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        policy: Any = load_policy(path, json.loads((path.parent / "train.json").read_text()), n)
        normal = policy.get_distribution(x).distribution
        return normal.mean, torch.log(normal.stddev)

    print(f"{len(x)} probe states ({args.episodes} optimal episodes on the {args.scenario} surrogate)")
    with torch.no_grad():
        ref_mean, ref_log_std = gaussian(args.reference)
        for path in args.policies:
            mean, log_std = gaussian(path)
            kl = gaussian_kl(mean, log_std, ref_mean, ref_log_std).mean().item()
            moved = (mean.clamp(-1, 1) - ref_mean.clamp(-1, 1)).abs().mean().item()
            print(f"{path}: KL to the reference {kl:.4f}, mean |action - reference action| {moved:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
