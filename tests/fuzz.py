"""Seeded, bounded fuzz campaigns against the ways issue 17 attacked fedsimenv.

Each campaign returns a :class:`Tally` of outcomes: ``tried``, ``clear error`` (a ``fedsimenv: error:``
message and exit 1 or 2, or a ``ValueError``/``TypeError`` from the library), ``ok`` (accepted, the
result finite and intact), and the three that must stay 0: ``traceback`` (any other exception, or an
error without the one-line form), ``NaN`` (a non-finite number reached a result), ``data lost`` (a
correct row changed or vanished, a user's file was touched, a failed bad-input run left files, a
payload ran). ``tests/test_fuzz.py`` runs small versions by default and the full ones under
``-m slow``; ``python -m tests.fuzz_report`` prints the table.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import json
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fedsimenv.cli import main
from fedsimenv.scenario import strict_yaml_load

ROOT = Path(__file__).resolve().parents[1]
MUST_BE_ZERO = ("traceback", "NaN", "data lost")


class Tally(collections.Counter[str]):
    """Outcome counts of one campaign, with the first few examples of each bad outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.examples: list[str] = []

    def add(self, outcome: str, example: str = "") -> None:
        self["tried"] += 1 if outcome != "data lost" or not example.startswith("+") else 0
        self[outcome] += 1
        if outcome in MUST_BE_ZERO and len(self.examples) < 5:
            self.examples.append(f"{outcome}: {example}"[:2000])

    def bad(self) -> int:
        return sum(self[k] for k in MUST_BE_ZERO)


# -- helpers --------------------------------------------------------------------------------------


def cli(argv: list[str]) -> tuple[int | None, str]:
    """Run the CLI in-process: (exit code or None if an exception escaped, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        except BaseException as exc:
            return None, f"{type(exc).__name__}: {exc}\n{err.getvalue()}"
    return code, err.getvalue()


def clear_cli_error(code: int | None, stderr: str) -> bool:
    """Exit 1 or 2 and an error of the documented form (first error line ``fedsimenv: error:``)."""
    lines = [line for line in stderr.splitlines() if not line.startswith("fedsimenv: warning:")]
    return (
        code in (1, 2)
        and bool(lines)
        and lines[0].startswith("fedsimenv: error: ")
        and "Traceback" not in stderr
    )


def strict_rows(path: Path) -> list[dict[str, Any]] | None:
    """The rows of a JSONL file, or None if a line is not strict JSON with finite numbers."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line, parse_constant=refuse)
        except ValueError:
            return None
        if any(isinstance(v, float) and not math.isfinite(v) for v in row.values()):
            return None
        rows.append(row)
    return rows


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")] if folder.exists() else []


# -- 1. hostile actions on every env id ----------------------------------------------------------------


def hostile_actions(size: int, rng: np.random.Generator) -> list[tuple[str, Any]]:
    """Actions an adversarial agent could send to a ``Box`` of ``size`` entries (or a MultiDiscrete)."""
    return [
        ("nan", np.full(size, np.nan)),
        ("+inf", np.full(size, np.inf)),
        ("-inf", np.full(size, -np.inf)),
        ("huge", np.full(size, 1e308)),
        ("-huge", np.full(size, -1e308)),
        ("mixed", rng.choice([np.nan, np.inf, -np.inf, 1e300, -5.0, 0.0, 7.0], size)),
        ("int64 extremes", rng.choice([np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1, 10**6], size)),
        ("too short", np.zeros(max(size - 1, 0))),
        ("too long", np.zeros(size + 1)),
        ("empty", np.zeros(0)),
        ("2-D", np.zeros((size, 2))),
        ("scalar", np.float64(0.5)),
        ("strings", np.array(["a"] * size)),
        ("None", None),
        ("dict", {"a": 1}),
        ("objects", [object()] * size),
    ]


def env_actions(steps_per_env: int = 1, seed: int = 17, env_ids: tuple[str, ...] | None = None) -> Tally:
    """Every registered env id (surrogate trainer, so it is fast), every hostile action."""
    import gymnasium as gym

    import fedsimenv

    tally = Tally()
    rng = np.random.default_rng(seed)
    for env_id in env_ids or fedsimenv.ENV_IDS:
        env = gym.make(env_id, trainer="surrogate", disable_env_checker=True)
        env.reset(seed=seed)
        size = int(np.prod(env.action_space.shape or (1,)))
        for name, action in hostile_actions(size, rng):
            for _ in range(steps_per_env):
                try:
                    observation, reward, terminated, truncated, _ = env.step(action)
                except (ValueError, TypeError) as err:
                    one_line = "\n" not in str(err) and bool(str(err))
                    tally.add("clear error" if one_line else "traceback", f"{env_id} {name}: {err}")
                    break
                except Exception as err:
                    tally.add("traceback", f"{env_id} {name}: {type(err).__name__}: {err}")
                    break
                values = [float(reward), *np.concatenate([np.ravel(v) for v in _leaves(observation)])]
                tally.add("ok" if all(math.isfinite(v) for v in values) else "NaN", f"{env_id} {name}")
                if terminated or truncated:
                    env.reset(seed=seed)
        env.close()
    return tally


def _leaves(observation: Any) -> Iterator[np.ndarray]:
    if isinstance(observation, dict):
        for value in observation.values():
            yield from _leaves(value)
    else:
        yield np.asarray(observation, dtype=np.float64)


# -- 2. mutated scenario files through validate and a 1-round surrogate run ----------------------


REPLACEMENTS: list[Any] = [
    float("inf"), float("-inf"), float("nan"), 0, -1, 1e-300, 1e300, 2**64, 2**70, 0.5, 1e9,
    True, False, "abc", "on", "12:30:00", None, [], {}, "/etc/passwd",
]  # fmt: skip


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for key, child in node.items() for p in _paths(child, (*path, key))] or [path]
    if isinstance(node, list):
        return [p for i, child in enumerate(node) for p in _paths(child, (*path, i))] or [path]
    return [path]


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def duplicate_key_line(rng: random.Random, text: str) -> str:
    """``text`` with one keyed line written twice (a duplicate YAML key)."""
    lines = text.splitlines()
    keyed = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("#")]
    i = rng.choice(keyed)
    return "\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]) + "\n"


def mutant(rng: random.Random, text: str) -> str:
    """One seeded mutation of a scenario: a leaf replaced by a hostile value, a key deleted, a line
    duplicated (a duplicate key), or a bogus key added."""
    kind = rng.choice(["replace"] * 5 + ["delete", "duplicate", "extra"])
    if kind == "duplicate":
        return duplicate_key_line(rng, text)
    data = strict_yaml_load(text)
    paths = [p for p in _paths(data) if p]
    path = rng.choice(paths)
    parent = _parent(data, path)
    if kind == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif kind == "extra" and isinstance(parent, dict):
        parent[f"bogus_{rng.randrange(100)}"] = 1
    else:
        numeric = [p for p in paths if isinstance(_parent(data, p)[p[-1]], int | float)] or paths
        path = rng.choice(numeric)
        _parent(data, path)[path[-1]] = rng.choice(REPLACEMENTS)
    return yaml.safe_dump(data, sort_keys=False)


def base_scenarios() -> dict[str, str]:
    """The built-in scenarios, plus ``tiny`` on the surrogate trainer (so runs of it are fast)."""
    root = resources.files("scenarios")
    texts = {p.name: p.read_text(encoding="utf-8") for p in root.iterdir() if p.name.endswith(".yaml")}
    tiny = strict_yaml_load(texts["tiny.yaml"])
    tiny["trainer"] = "surrogate"
    texts["tiny-surrogate.yaml"] = yaml.safe_dump(tiny, sort_keys=False)
    return texts


def scenario_mutations(count: int, workdir: Path, seed: int = 17, run_every: int = 1) -> Tally:
    """``count`` mutants through ``validate``; every ``run_every``-th valid one also through a 1-round
    ``run`` on the surrogate trainer into a fresh ``--out``.

    A ``run`` counts as ``data lost`` if it failed with exit 2 (bad input) and left its ``--out``
    behind, or left a temporary file; as ``NaN`` if ``metrics.jsonl`` is not strict, finite JSON.
    """
    texts = base_scenarios()
    names = sorted(texts)
    weights = [6 if n == "tiny-surrogate.yaml" else 1 for n in names]
    rng = random.Random(seed)
    tally = Tally()
    path = workdir / "mutant.yaml"
    valid = 0
    for n in range(count):
        name = rng.choices(names, weights)[0]
        path.write_text(mutant(rng, texts[name]), encoding="utf-8")
        code, err = cli(["validate", str(path)])
        if code == 0:
            tally.add("ok")
            valid += 1
        elif clear_cli_error(code, err):
            tally.add("clear error")
            continue
        else:
            tally.add("traceback", f"validate {name}: {err}\n{path.read_text()}")
            continue
        if valid % run_every:
            continue
        out = workdir / f"run-{n}"
        code, err = cli(
            ["run", str(path), "--set", "trainer=surrogate", "--rounds", "1", "--out", str(out), "--quiet"]
        )
        label = f"run {name}: {err}\n{path.read_text()}"
        if code == 0:
            rows = strict_rows(out / "metrics.jsonl")
            tally.add("ok" if rows and len(rows) == 1 else "NaN", label)
        elif clear_cli_error(code, err):
            tally.add("clear error")
            if code == 2 and out.exists():
                tally.add("data lost", f"+ exit 2 left {sorted(p.name for p in out.iterdir())}: {label}")
        else:
            tally.add("traceback", label)
        if temporaries(out):
            tally.add("data lost", f"+ temporary files left: {label}")
        shutil.rmtree(out, ignore_errors=True)
    return tally


# -- 3. damaged run directories through --resume ------------------------------------------------------


RUN_ARGS = ["tiny", "--set", "trainer=surrogate", "--checkpoint-every", "2", "--timeline"]


def reference_run(workdir: Path, rounds: int = 6, extra: tuple[str, ...] = ()) -> Path:
    """A finished run of ``rounds`` rounds with checkpoints every 2 rounds (the template to damage)."""
    ref = workdir / "reference"
    code, err = cli(["run", *RUN_ARGS, *extra, "--rounds", str(rounds), "--out", str(ref), "--quiet"])
    assert code == 0, err
    return ref


def _flip(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    if data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))


def _edit_yaml(key: str, value: Any) -> Callable[[Path, random.Random], object]:
    def edit(run: Path, rng: random.Random) -> None:
        data = yaml.safe_load((run / "config.yaml").read_text())
        section, field = key.split(".")
        data[section][field] = value
        (run / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    return edit


def _edit_json(key: str, value: Any) -> Callable[[Path, random.Random], object]:
    def edit(run: Path, rng: random.Random) -> None:
        meta = json.loads((run / "run.json").read_text())
        meta[key] = value
        (run / "run.json").write_text(json.dumps(meta))

    return edit


STALE = ".round-000006.pt.0123456789ab.tmp"


def _checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("*.pt"))


def _flip_all(paths: list[Path], rng: random.Random) -> None:
    for path in paths:
        _flip(path, rng)


def _truncate(path: Path, rng: random.Random) -> None:
    path.write_bytes(path.read_bytes()[: rng.randrange(200)])


def _newest(run: Path, suffix: str = ".pt") -> Path:
    return sorted((run / "checkpoints").glob(f"round-*{suffix}"))[-1]


def _forged_checkpoint(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, random.Random], object]:
    """Rewrite the newest checkpoint with a *valid* checksum but changed content (a forger's move)."""

    def forge(run: Path, rng: random.Random) -> None:
        from fedsimenv.experiments.checkpoints import load_checkpoint, save_checkpoint

        path = _newest(run)
        payload = load_checkpoint(path)
        change(payload)
        save_checkpoint(path, payload)

    return forge


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        payload[key] = value

    return change


def _bad_record(payload: dict[str, Any]) -> None:
    payload["records"][0] = {"action": "x"}


def _zero_weights(payload: dict[str, Any]) -> None:
    payload["trainer"] = {"not": "a state"}


DAMAGES: dict[str, Callable[[Path, random.Random], object]] = {
    "flip byte in newest checkpoint": lambda run, rng: _flip(_newest(run), rng),
    "flip byte in every checkpoint": lambda run, rng: _flip_all(_checkpoints(run), rng),
    "flip byte in newest checksum": lambda run, rng: _flip(_newest(run, ".sha256"), rng),
    "truncate newest checkpoint": lambda run, rng: _truncate(_newest(run), rng),
    "random bytes as checkpoint": lambda run, rng: _newest(run).write_bytes(rng.randbytes(500)),
    "delete newest checksum": lambda run, rng: _newest(run, ".sha256").unlink(),
    "delete checkpoints": lambda run, rng: shutil.rmtree(run / "checkpoints"),
    "truncate metrics.jsonl": lambda run, rng: (run / "metrics.jsonl").write_bytes(
        (run / "metrics.jsonl").read_bytes()[: rng.randrange(1, (run / "metrics.jsonl").stat().st_size)]
    ),
    "flip byte in metrics.jsonl": lambda run, rng: _flip(run / "metrics.jsonl", rng),
    "delete metrics.jsonl": lambda run, rng: (run / "metrics.jsonl").unlink(),
    "truncate timeline.jsonl": lambda run, rng: (run / "timeline.jsonl").write_text(""),
    "delete config.yaml": lambda run, rng: (run / "config.yaml").unlink(),
    "delete run.json": lambda run, rng: (run / "run.json").unlink(),
    "garbage run.json": lambda run, rng: (run / "run.json").write_bytes(rng.randbytes(64)),
    "run.json not an object": lambda run, rng: (run / "run.json").write_text("[1, 2]"),
    "run.json seed a string": _edit_json("seed", "0"),
    "run.json other agent": _edit_json("agent", "random"),
    "run.json other seed": _edit_json("seed", 5),
    "run.json no fingerprint": _edit_json("fingerprint", None),
    "config.yaml learning_rate": _edit_yaml("learning.learning_rate", 0.1),
    "config.yaml bandwidth": _edit_yaml("network.bandwidth_hz", 1.0e6),
    "config.yaml lower max_rounds": _edit_yaml("episode.max_rounds", 3),
    "config.yaml raise max_rounds": _edit_yaml("episode.max_rounds", 8),
    "config.yaml not YAML": lambda run, rng: (run / "config.yaml").write_text("{{{: ["),
    "forged checkpoint: other fingerprint": _forged_checkpoint(_set("fingerprint", "0" * 64)),
    "forged checkpoint: malformed record": _forged_checkpoint(_bad_record),
    "forged checkpoint: round mismatch": _forged_checkpoint(_set("round", 99)),
    "forged checkpoint: bad trainer state": _forged_checkpoint(_zero_weights),
    "forged checkpoint: other format": _forged_checkpoint(_set("format", 1)),
    "stale temporary files": lambda run, rng: (run / "checkpoints" / STALE).write_bytes(b"x"),
}  # fmt: skip


def damaged_resumes(workdir: Path, repeats: int = 1, seed: int = 17, kinds: list[str] | None = None) -> Tally:
    """Each damage of :data:`DAMAGES` (``repeats`` seeded variants) applied to a copy of a finished run,
    then ``run --resume``. ``ok`` needs metrics.jsonl to equal the reference's rows (the first rows, for
    a raised max_rounds); a refusal needs every complete row that was there before to be unchanged."""
    reference = reference_run(workdir)
    expected = (reference / "metrics.jsonl").read_text()
    rng = random.Random(seed)
    tally = Tally()
    for name in kinds or list(DAMAGES):
        for repeat in range(repeats):
            run = workdir / f"victim-{len(tally)}-{repeat}"
            shutil.copytree(reference, run)
            DAMAGES[name](run, rng)
            metrics = run / "metrics.jsonl"
            before = metrics.read_text(errors="replace") if metrics.exists() else ""
            code, err = cli(["run", "--resume", str(run), "--quiet"])
            after = metrics.read_text(errors="replace") if metrics.exists() else ""
            label = f"{name}: exit {code}: {err.strip()[:300]}"
            if code == 0:
                rows = strict_rows(metrics)
                if rows is None:
                    tally.add("NaN", label)
                elif after[: len(expected)] != expected:
                    tally.add("data lost", label)
                else:
                    tally.add("ok")
            elif clear_cli_error(code, err):
                complete = before[: before.rfind("\n") + 1]
                tally.add("clear error" if after.startswith(complete) else "data lost", label)
            else:
                tally.add("traceback", label)
            if temporaries(run):
                tally.add("data lost", f"+ temporary files left: {label}")
            shutil.rmtree(run, ignore_errors=True)
    return tally


# -- 4. malicious CIFAR, calibration and trace files ------------------------------------------------


class _Payload:
    """Unpickling this runs ``os.system`` (what a malicious batch would do to a plain ``pickle.load``)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


class _EvalPayload(_Payload):
    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"__import__('os').system({self.command!r})",))


def _cifar_batch(n: int = 4, label: int = 3) -> dict[bytes, Any]:
    return {
        b"batch_label": b"training batch",
        b"labels": [label] * n,
        b"data": np.zeros((n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }


def _write_cifar(folder: Path, first: Any, protocol: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = first if name == "data_batch_1" else _cifar_batch()
        (folder / name).write_bytes(pickle.dumps(obj, protocol=protocol))


def malicious_files(workdir: Path) -> Tally:
    """Payloads that would create a marker file if any loader executed them; file contents echoed in
    errors count as ``data lost`` (a leak). A genuine CIFAR layout must still load (``ok``)."""
    from fedsimenv.learning.datasets import DatasetSpec, load_cifar10
    from fedsimenv.learning.surrogate import load_calibration

    tally = Tally()
    marker = workdir / "PWNED"
    command = f"touch {marker}"
    payloads: dict[str, Any] = {
        "os.system batch": _Payload(command),
        "eval batch": _EvalPayload(command),
        "payload inside the dict": {**_cifar_batch(), b"labels": _Payload(command)},
        "payload as data": {**_cifar_batch(), b"data": _EvalPayload(command)},
        "not a dict": [1, 2, 3],
        "wrong dtype": {**_cifar_batch(), b"data": np.zeros((4, 3072), dtype=np.float64)},
        "wrong shape": {**_cifar_batch(), b"data": np.zeros((4, 100), dtype=np.uint8)},
        "label out of range": _cifar_batch(label=10),
        "labels too few": {**_cifar_batch(), b"labels": [1]},
    }
    for protocol in (2, 5):
        for name, first in payloads.items():
            folder = workdir / f"cifar-{protocol}-{len(tally)}"
            _write_cifar(folder, first, protocol)
            _check_load(
                tally,
                f"cifar p{protocol} {name}",
                functools.partial(load_cifar10, DatasetSpec(data_dir=folder)),
                marker,
            )
        folder = workdir / f"cifar-good-{protocol}"
        _write_cifar(folder, _cifar_batch(), protocol)
        try:
            train, test = load_cifar10(DatasetSpec(data_dir=folder))
            tally.add(
                "ok" if train.x.shape == (20, 3, 32, 32) and test is not None else "data lost", "genuine"
            )
        except Exception as exc:
            tally.add("traceback", f"genuine CIFAR layout refused: {exc}")
    # A raw pickle payload file (not even a dict) through the CLI: exit 2, nothing written, no marker.
    folder = workdir / "cifar-cli"
    _write_cifar(folder, _Payload(command))
    out = workdir / "cli-out"
    code, err = cli(["run", "tiny", "--rounds", "1", "--out", str(out), "--quiet",
                     "--set", "learning.dataset=cifar10", "--set", "learning.model=mlp",
                     "--set", f"learning.data_dir={folder}"])  # fmt: skip
    if marker.exists() or out.exists():
        tally.add("data lost", f"cifar via CLI: marker {marker.exists()}, out left {out.exists()}: {err}")
    else:
        tally.add("clear error" if clear_cli_error(code, err) else "traceback", f"cifar via CLI: {err}")

    base = json.loads((resources.files("scenarios") / "surrogate-digits-small-cnn.json").read_text())
    secret = "SECRET-CONTENT-4242"
    calibrations: dict[str, str] = {
        "NaN curve": json.dumps({**base, "curve": {**base["curve"], "rate": float("nan")}}),
        "Infinity cost": json.dumps({**base, "costs": {**base["costs"], "download_bits": float("inf")}}),
        "negative accuracy": json.dumps({**base, "curve": {**base["curve"], "max_accuracy": -1}}),
        "string number": json.dumps({**base, "curve": {**base["curve"], "shape": secret}}),
        "bool total": json.dumps({**base, "costs": {**base["costs"], "total_params": True}}),
        "curve a list": json.dumps({**base, "curve": [1, 2]}),
        "rho decreasing": json.dumps({**base, "costs": {**base["costs"], "rho": base["costs"]["rho"][::-1]}}),
        "not JSON": secret + "{",
        "binary": "\udcff" + secret,
        "empty": "",
    }
    for name, text in calibrations.items():
        path = workdir / f"calibration-{len(tally)}.json"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        _check_load(tally, f"calibration {name}", functools.partial(load_calibration, path), marker, secret)
    # devices.trace_csv pointing at a file with a secret: the error must not quote it.
    for name, text in {
        "secret header": f"{secret}\n1\n",
        "secret value": f"cpu_freq_hz\n{secret}\n" * 1,
    }.items():
        path = workdir / f"trace-{len(tally)}.csv"
        path.write_text(text)
        code, err = cli(["run", "tiny", "--set", "trainer=surrogate", "--rounds", "1", "--quiet",
                         "--set", f"devices.trace_csv={path}"])  # fmt: skip
        if secret in err:
            tally.add("data lost", f"trace {name}: contents echoed: {err}")
        else:
            tally.add("clear error" if clear_cli_error(code, err) else "traceback", f"trace {name}: {err}")
    return tally


def _check_load(tally: Tally, label: str, load: Callable[[], Any], marker: Path, secret: str = "") -> None:
    try:
        load()
    except ValueError as err:
        message = str(err)
        if secret and secret in message:
            tally.add("data lost", f"{label}: contents echoed: {message}")
        else:
            tally.add("clear error")
    except Exception as err:
        tally.add("traceback", f"{label}: {type(err).__name__}: {err}")
    else:
        tally.add("data lost", f"{label}: accepted")
    if marker.exists():
        tally.add("data lost", f"+ {label}: the payload ran")
        marker.unlink()


# -- 5. output directories and concurrent writers ------------------------------------------------


def output_dirs(workdir: Path) -> Tally:
    """``--out`` that is a file, under a file, read-only, a user's directory; files 0644 afterwards."""
    tally = Tally()
    args = ["tiny", "--set", "trainer=surrogate", "--rounds", "1", "--quiet"]
    afile = workdir / "afile"
    afile.write_text("user data")
    user = workdir / "user"
    user.mkdir()
    (user / "notes.txt").write_text("user data")
    readonly = workdir / "readonly"
    readonly.mkdir(mode=0o555)
    cases = {
        "a file": afile,
        "under a file": afile / "sub",
        "a user's directory": user,
        "inside a read-only directory": readonly / "out",
        "on a read-only file system": Path("/proc/fedsimenv-out"),  # refused even for root
    }
    for name, out in cases.items():
        for extra in ([], ["--overwrite"]):
            code, err = cli(["run", *args, "--out", str(out), *extra])
            intact = afile.read_text() == "user data" and sorted(p.name for p in user.iterdir()) == [
                "notes.txt"
            ]
            if os.geteuid() == 0 and name.startswith("inside a read-only") and code == 0:
                tally.add("ok")  # root ignores the mode bits
                shutil.rmtree(out)
            elif not intact or (out.exists() and out not in (afile, user)):
                tally.add("data lost", f"{name}: {err}")
            else:
                tally.add("clear error" if clear_cli_error(code, err) else "traceback", f"{name}: {err}")
    good = workdir / "good"
    old = os.umask(0o022)
    try:
        code, err = cli(["run", *args, "--checkpoint-every", "1", "--timeline", "--out", str(good)])
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in good.rglob("*") if p.is_file()}
    wrong = {k: oct(v) for k, v in modes.items() if v != 0o644}
    tally.add(
        "ok" if code == 0 and not wrong and not temporaries(good) else "data lost", f"modes {wrong} {err}"
    )
    readonly.chmod(0o755)
    return tally


def concurrent_writers(workdir: Path, pairs: int = 1) -> Tally:
    """Two ``run --overwrite`` processes on one ``--out``: one writes, the other is refused with a clear
    error (or runs after it); metrics.jsonl is never interleaved."""
    tally = Tally()
    command = [sys.executable, "-m", "fedsimenv", "run", "tiny", "--set", "trainer=surrogate"]
    command += ["--rounds", "4", "--overwrite", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for pair in range(pairs):
        out = workdir / f"shared-{pair}"
        procs = [
            subprocess.Popen(
                [*command, "--out", str(out)], stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
            )
            for _ in range(2)
        ]
        results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in procs]
        rows = strict_rows(out / "metrics.jsonl") if (out / "metrics.jsonl").exists() else None
        for code, err in results:
            if code == 0:
                tally.add(
                    "ok" if rows is not None and [r["round"] for r in rows] == [1, 2, 3, 4] else "data lost",
                    err,
                )
            else:
                tally.add("clear error" if clear_cli_error(code, err) else "traceback", err)
    return tally


def format_report(results: dict[str, Tally]) -> str:
    columns = ("tried", "ok", "clear error", *MUST_BE_ZERO)
    width = max(len(name) for name in results) + 2
    lines = [f"{'campaign':<{width}}" + "".join(f"{c:>13}" for c in columns)]
    total = Tally()
    for name, tally in results.items():
        lines.append(f"{name:<{width}}" + "".join(f"{tally[c]:>13}" for c in columns))
        total.update(tally)
    lines.append(f"{'total':<{width}}" + "".join(f"{total[c]:>13}" for c in columns))
    for name, tally in results.items():
        lines += [f"  {name}: {example}" for example in tally.examples]
    return "\n".join(lines)
