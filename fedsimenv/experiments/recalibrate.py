"""The re-calibration loop: ``fedsimenv recalibrate``'s engine.

A surrogate fitted on hand-made decisions may still rate a trained policy's own decisions wrongly
(the policy goes where the fit is loose). One command closes the loop, ``iterations`` times:

1. train a policy on the surrogate with the current calibration (``fedsimenv train``'s recipe,
   :func:`fedsimenv.experiments.rl_training.train_policy`);
2. run that policy on *real* training over ``policy_runs`` fresh seeds, recorded like calibration
   runs (region ``policy``); before anything is refitted, the current calibration's error on these
   runs is the surrogate's gap on the policy's own rounds (reported per iteration);
3. add the runs (all but the last, which joins the held-out set) to the fitted set and refit;
   the held-out error, overall and per region of the action space, goes in the new calibration.

DIR receives ``calibration-0.json`` (from ``fedsimenv calibrate``'s runs, or the ``--calibration`` /
``--records`` given), ``calibration-I.json`` and ``policy-I/`` per iteration, ``runs.json`` (every
recorded run and which are held out) and ``recalibrate.json`` (the per-iteration report). Train the
final policy with ``fedsimenv train --calibration DIR/calibration-I.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fedsimenv.atomic import write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.scenario import load_scenario

#: Seeds of the policy's real runs: far from training (0..), behaviour cloning (20000..), training-time
#: evaluation (10000..), comparison (100..) and calibration seeds.
POLICY_RUN_SEED_OFFSET = 50_000


def _save_runs(path: Path, runs: list[Any], held_out: list[bool]) -> None:
    from fedsimenv.learning.surrogate_fit import records_to_json

    data = json.loads(records_to_json(runs))
    data["held_out"] = held_out
    write_text_atomic(path, json.dumps(data) + "\n")


def load_runs(path: Path) -> tuple[list[Any], list[bool]]:
    """A ``runs.json`` (or ``fedsimenv calibrate --records`` file): the runs and their held-out flags
    (a calibrate records file marks its held-out runs as :func:`calibrate.held_out_count` does)."""
    from fedsimenv.experiments.calibrate import held_out_count
    from fedsimenv.learning.surrogate_fit import records_from_json

    text = path.read_text(encoding="utf-8")
    runs = records_from_json(text, str(path))
    flags = json.loads(text).get("held_out")
    if flags is None:
        count = held_out_count(len(runs))
        flags = [i >= len(runs) - count for i in range(len(runs))]
    if not isinstance(flags, list) or len(flags) != len(runs) or not all(isinstance(f, bool) for f in flags):
        raise ValueError(f"{path}: field 'held_out' must be one boolean per run")
    return runs, flags


def recalibrate(
    config: ScenarioConfig,
    out_dir: Path,
    *,
    iterations: int,
    runs: int,
    policy_runs: int,
    settings: Any,
    seed: int = 0,
    noise: bool = False,
    calibration: Path | None = None,
    records: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the loop (module docstring); returns ``recalibrate.json``'s content.

    ``settings`` is a :class:`~fedsimenv.experiments.rl_settings.TrainSettings` (its seed is offset
    by the iteration). Starting from ``calibration`` + ``records`` skips the initial calibration."""
    from agents.rl_policy import load_policy
    from fedsimenv.experiments.calibrate import calibrate as run_calibration
    from fedsimenv.experiments.calibrate import fit_calibration, record_run
    from fedsimenv.experiments.rl_eval import policy_decider
    from fedsimenv.experiments.rl_training import train_policy
    from fedsimenv.learning.surrogate import load_calibration
    from fedsimenv.learning.surrogate_fit import curve_error, error_by_region, predict_run

    if iterations < 1 or policy_runs < 2:
        raise ValueError("--iterations must be >= 1 and --policy-runs >= 2 (one joins the held-out set)")
    if (calibration is None) != (records is None):
        raise ValueError("--calibration and --records go together (the runs the calibration was fitted on)")
    out_dir.mkdir(parents=True, exist_ok=True)
    real = config.model_copy(update={"trainer": "torch"})
    if calibration is not None and records is not None:
        current = load_calibration(calibration)
        recorded, held = load_runs(records)
    else:
        current, recorded = run_calibration(real, runs, seed, noise=noise)
        from fedsimenv.experiments.calibrate import held_out_count

        count = held_out_count(len(recorded))
        held = [i >= len(recorded) - count for i in range(len(recorded))]
    path = out_dir / "calibration-0.json"
    write_text_atomic(path, current.to_json())
    _save_runs(out_dir / "runs.json", recorded, held)
    log(f"calibration 0: held-out accuracy MAE {current.error['held_out']['accuracy_mae']:.4f}")
    report: list[dict[str, Any]] = []
    for iteration in range(1, iterations + 1):
        train_config = load_scenario(
            config,
            {"trainer": "surrogate", "learning.surrogate.calibration_file": str(path.resolve())},
        )
        policy_dir = out_dir / f"policy-{iteration}"
        meta = train_policy(
            train_config,
            replace(settings, seed=settings.seed + iteration),
            policy_dir,
            overwrite=True,
            log=log,
        )
        policy = load_policy(policy_dir / "policy.zip", meta, config.cell.num_devices)
        first = seed + POLICY_RUN_SEED_OFFSET + iteration * policy_runs
        new = [record_run(real, first + j, decide=policy_decider(policy)) for j in range(policy_runs)]
        gap = curve_error(current.curve, new)
        predicted_final = float(np.mean([predict_run(current.curve, run)[0][-1] for run in new]))
        real_final = float(np.mean([run.rounds[-1].accuracy for run in new]))
        recorded += new
        held += [False] * (policy_runs - 1) + [True]
        fit_runs = [run for run, h in zip(recorded, held, strict=True) if not h]
        test_runs = [run for run, h in zip(recorded, held, strict=True) if h]
        current = fit_calibration(real, fit_runs, test_runs, seed, noise, costs=current.costs)
        path = out_dir / f"calibration-{iteration}.json"
        write_text_atomic(path, current.to_json())
        _save_runs(out_dir / "runs.json", recorded, held)
        after = curve_error(current.curve, new)
        row = {
            "iteration": iteration,
            "policy": str(policy_dir / "policy.zip"),
            "policy_real_final_accuracy": real_final,
            "surrogate_predicted_final_accuracy": predicted_final,
            "gap_before_refit": gap,
            "error_on_policy_runs_after_refit": after,
            "held_out": current.error["held_out"],
            "held_out_by_region": error_by_region(current.curve, test_runs),
        }
        report.append(row)
        log(
            f"iteration {iteration}: policy's real final accuracy {real_final:.4f}, surrogate predicted "
            f"{predicted_final:.4f} (accuracy MAE on its rounds {gap['accuracy_mae']:.4f} before refit, "
            f"{after['accuracy_mae']:.4f} after); held-out MAE "
            f"{current.error['held_out']['accuracy_mae']:.4f}"
        )
    result = {"scenario": config.name, "iterations": report, "calibration": str(path)}
    write_text_atomic(out_dir / "recalibrate.json", json.dumps(result, indent=1) + "\n")
    return result
