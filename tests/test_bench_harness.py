"""The benchmark harness (bench/): paired ratios, the report files, and a quick run of its sections.

The figures of a quick run mean nothing (tiny sizes); these tests check that the harness measures,
pairs and writes what it says, so that `python -m bench` cannot rot unseen.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from bench import fedavg_round, gpu
from bench.__main__ import SECTIONS, run_section
from bench.__main__ import main as bench_main
from bench.fedavg_systems import WARMUP_ROUNDS
from bench.report import Ratio, Report, figure


def test_ratios_pair_repeats_when_both_figures_have_the_same_repeats() -> None:
    slow = figure("s", "slow", "ms", [10.0, 30.0, 20.0])
    fast = figure("s", "fast", "ms", [5.0, 10.0, 4.0])
    paired = Ratio("slow / fast", slow, fast, target=3.0)
    assert paired.paired is None and paired.is_paired  # inferred from the equal repeat counts
    assert paired.samples == (2.0, 3.0, 5.0)  # 10/5, 30/10, 20/4
    assert paired.median == 3.0 and paired.met is True
    unpaired = Ratio("slow / one", slow, figure("s", "one", "ms", [4.0]))
    assert not unpaired.is_paired and unpaired.samples == (5.0,)  # median 20 / 4
    assert unpaired.met is None


def test_ratio_of_medians_when_asked_even_for_equal_repeat_counts() -> None:
    # Figures measured one after the other (not alternated): pairing their repeats would mean nothing.
    slow = figure("s", "slow", "ms", [10.0, 30.0, 20.0])
    fast = figure("s", "fast", "ms", [5.0, 10.0, 4.0])
    ratio = Ratio("slow / fast", slow, fast, target=3.0, paired=False)
    assert not ratio.is_paired
    assert ratio.samples == (4.0,)  # median 20 / median 5
    assert ratio.median == 4.0 and ratio.met is True
    report = Report({"cpu": "test"}, [slow, fast], [ratio])
    assert "| slow / fast | 4.00x | 4.00x | 4.00x | ratio of medians | >= 3 | yes |" in report.to_markdown()
    assert report.to_json()["ratios"][0]["paired"] is False


def test_a_paired_ratio_needs_equal_repeat_counts() -> None:
    slow = figure("s", "slow", "ms", [10.0, 30.0, 20.0])
    with pytest.raises(ValueError, match="'slow' has 3 repeat\\(s\\) and 'short' has 2"):
        Ratio("slow / short", slow, figure("s", "short", "ms", [5.0, 10.0]), paired=True)
    single = Ratio("one / one", figure("s", "a", "ms", [6.0]), figure("s", "b", "ms", [3.0]), paired=True)
    assert single.is_paired and single.samples == (2.0,)


def test_figures_need_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        figure("s", "empty", "ms", [])


def test_report_files_hold_every_figure_and_ratio(tmp_path: Path) -> None:
    a, b = figure("A", "x", "ms", [2.0, 4.0]), figure("A", "y", "ms", [1.0, 1.0])
    report = Report({"cpu": "test"}, [a, b], [Ratio("x / y", a, b, 2.0)], ["a note"])
    report.write(tmp_path / "R.md", tmp_path / "R.json")
    data = json.loads((tmp_path / "R.json").read_text())
    assert [f["median"] for f in data["figures"]] == [3.0, 1.0]
    assert data["ratios"][0]["median"] == 3.0 and data["ratios"][0]["met"] is True
    text = (tmp_path / "R.md").read_text()
    assert "| x / y | 3.00x | 2.00x | 4.00x | paired repeats | >= 2 | yes |" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R.json", "R.md"]  # no temporary files left


@pytest.mark.parametrize(
    "sections", [["solvers"], pytest.param(["cohort", "solvers"], marks=pytest.mark.slow)]
)
def test_quick_harness_run_writes_a_report_of_the_sections_asked_for(
    tmp_path: Path, sections: list[str]
) -> None:
    # The cohort section spawns fresh processes for its memory figures (~20 s): -m slow only.
    status = bench_main(["--quick", "--only", *sections, "--out", str(tmp_path)])
    assert status == 0
    data = json.loads((tmp_path / "RESULTS.json").read_text())
    found = {f["section"] for f in data["figures"]}
    titles = {"cohort": "Cohort training", "solvers": "Solvers"}
    assert {titles[name] for name in sections} == {
        t for t in titles.values() if any(s.startswith(t) for s in found)
    }
    # Times are positive; a peak-RSS growth may be 0 (ru_maxrss is the process's high-water mark, which
    # earlier tests in this process may already have raised above what the section needs).
    assert all(f["median"] > 0 for f in data["figures"] if f["unit"].startswith("ms/"))
    assert all(f["median"] >= 0 for f in data["figures"] if f["unit"] == "MiB")
    assert data["machine"]["torch threads"] >= 1
    assert (tmp_path / "RESULTS.md").read_text().startswith("# fedsimenv benchmark report")


def test_gpu_section_runs_its_code_on_the_cpu_and_skips_cuda_when_absent() -> None:
    figures, ratios, notes = gpu.collect(device="cpu", quick=True)
    assert len(figures) == 2 and len(ratios) == 1 and notes == ["GPU section ran on cpu"]
    assert all(f.median > 0 for f in figures)
    if not torch.cuda.is_available():
        assert gpu.collect(device="cuda") == ([], [], ["GPU section skipped: no CUDA device on this machine"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_script_exits_cleanly_with_one_line_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.main([]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "no CUDA device" in captured.err


def test_bad_arguments_name_the_allowed_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--only", "nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(SECTIONS))
def test_every_section_takes_repeats(name: str) -> None:
    # `python -m bench --only <section> --repeats R` hands repeats to every section asked for.
    collect = importlib.import_module(SECTIONS[name]).collect
    assert "repeats" in inspect.signature(collect).parameters


def test_fedavg_repeats_are_timed_rounds_after_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_collect(clients: Any, rounds: int, quick: bool, flower: bool, pairs: int) -> SimpleNamespace:
        seen.update(rounds=rounds, quick=quick)
        return SimpleNamespace(figures=[], ratios=[], notes=[])

    monkeypatch.setattr(fedavg_round, "_collect", fake_collect)
    assert run_section("fedavg", quick=False, repeats=5) == ([], [], [])
    assert seen == {"rounds": 5 + WARMUP_ROUNDS, "quick": False}
    run_section("fedavg", quick=False, repeats=None)
    assert seen["rounds"] == fedavg_round.DEFAULT_ROUNDS
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        fedavg_round.collect(repeats=0)


def test_merge_replaces_only_the_regenerated_sections(tmp_path: Path) -> None:
    def section(title: str, key: str, value: float) -> Report:
        a = figure(title, "a", "ms", [value, 2 * value])
        b = figure(title, "b", "ms", [value, value])
        report = Report({"cpu": key})
        report.extend(([a, b], [Ratio(f"{key} a/b", a, b, paired=True)], [f"{key} note {value}"]), key)
        return report

    old = section("Old A", "alpha", 1.0)
    old.extend(([figure("Old B", "c", "s", [5.0])], [], ["beta note"]), "beta")
    old.write(tmp_path / "RESULTS.md", tmp_path / "RESULTS.json")
    loaded = Report.from_json(json.loads((tmp_path / "RESULTS.json").read_text()))
    assert loaded.to_json() == old.to_json()  # a lossless round trip (samples, pairing, note tags)
    new = section("Old A", "alpha", 10.0)
    merged = new.merged_into(loaded, ["alpha"])
    assert [(f.section, f.name, f.samples) for f in merged.figures] == [
        ("Old B", "c", (5.0,)),
        ("Old A", "a", (10.0, 20.0)),
        ("Old A", "b", (10.0, 10.0)),
    ]
    assert [r.samples for r in merged.ratios] == [(1.0, 2.0)]
    assert merged.notes[:2] == ["beta note", "alpha note 10.0"] and merged.note_sections == [
        "beta",
        "alpha",
        "alpha",
    ]
    assert merged.machine == {"cpu": "alpha"} and merged.notes[2].startswith("alpha: measured in a later run")
    # The command line: a section taken from its own script's report, merged into --out.
    new.write(tmp_path / "alpha.md", tmp_path / "alpha.json")
    with pytest.raises(SystemExit):
        bench_main(["--from-json", "nope", str(tmp_path / "alpha.json"), "--out", str(tmp_path)])
    assert (
        bench_main(["--from-json", "fedavg", str(tmp_path / "alpha.json"), "--out", str(tmp_path), "--merge"])
        == 0
    )
    data = json.loads((tmp_path / "RESULTS.json").read_text())
    assert [f["section"] for f in data["figures"]] == ["Old B", "Old A", "Old A"]
    assert data["note_sections"] == ["alpha", "beta", "fedavg", "fedavg"]  # old alpha notes: tag alpha, kept
