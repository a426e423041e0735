"""Figures, paired ratios and the machine description of one benchmark run; markdown and JSON out.

A :class:`Figure` is one measured quantity with all its repeats (median and min-max are derived, never
stored). A :class:`Ratio` compares two figures measured in the same run: when their repeats were taken
alternately, the ratio is formed repeat by repeat (so a load spike on this shared machine hits
numerator and denominator alike) and its median and range are reported; otherwise it is the ratio of
the medians. The caller says which with ``paired``; left unset, equal repeat counts (more than one)
are taken to mean alternated repeats. Files are written to a temporary name and renamed, so an
interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedsimenv.atomic import write_text_atomic


@dataclass(frozen=True)
class Figure:
    """One measured quantity.

    Attributes:
        section: Heading the figure is reported under (e.g. "FedAvg round").
        name: What was measured, including the case (e.g. "fedsimenv batched, N=50").
        unit: Unit of every sample (e.g. "ms/round", "GFLOP/s").
        samples: One value per repeat.
        higher_is_better: For reading the table; ratios are always numerator / denominator.
        note: Free text shown next to the figure.
    """

    section: str
    name: str
    unit: str
    samples: tuple[float, ...]
    higher_is_better: bool = False
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def maximum(self) -> float:
        return max(self.samples)


def figure(
    section: str,
    name: str,
    unit: str,
    samples: Sequence[float],
    *,
    higher_is_better: bool = False,
    note: str = "",
) -> Figure:
    if not samples:
        raise ValueError(f"figure {section!r}/{name!r}: no samples")
    return Figure(section, name, unit, tuple(float(s) for s in samples), higher_is_better, note)


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` of two figures of the same run, with an optional target.

    Attributes:
        name: What the ratio says (e.g. "speed-up batched vs plain loop, N=50").
        numerator, denominator: The figures compared.
        target: The ratio must be >= target to count as met (None: no target).
        paired: How the ratio is formed. True: repeat by repeat, for figures whose repeats were taken
            alternately (their repeat counts must be equal, else ValueError); False: always the ratio
            of the medians (figures measured one after the other, or in different processes); None:
            inferred, paired when both figures have the same number of repeats, more than one.
            :attr:`is_paired` is the resolved choice.
    """

    name: str
    numerator: Figure
    denominator: Figure
    target: float | None = None
    paired: bool | None = None

    def __post_init__(self) -> None:
        counts = len(self.numerator.samples), len(self.denominator.samples)
        if self.paired is True and counts[0] != counts[1]:
            raise ValueError(
                f"ratio {self.name!r} is paired, but {self.numerator.name!r} has {counts[0]} repeat(s) "
                f"and {self.denominator.name!r} has {counts[1]}"
            )

    @property
    def is_paired(self) -> bool:
        """Whether the ratio is formed repeat by repeat (``paired``, or inferred when it is None)."""
        if self.paired is not None:
            return self.paired
        return len(self.numerator.samples) == len(self.denominator.samples) > 1

    @property
    def samples(self) -> tuple[float, ...]:
        if self.is_paired:
            return tuple(a / b for a, b in zip(self.numerator.samples, self.denominator.samples, strict=True))
        return (self.numerator.median / self.denominator.median,)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.median >= self.target


#: What one benchmark module's ``collect()`` returns: figures, ratios between them, notes.
Collected = tuple[list[Figure], list[Ratio], list[str]]


@dataclass
class Report:
    """Everything one run measured, in the order it was measured."""

    machine: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The section key (``python -m bench --only`` name) each note came from ("" when unknown).
    note_sections: list[str] = field(default_factory=list)

    def extend(self, collected: Collected, section_key: str = "") -> None:
        figures, ratios, notes = collected
        self.figures.extend(figures)
        self.ratios.extend(ratios)
        self.notes.extend(notes)
        self.note_sections.extend([section_key] * len(notes))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """The report a :meth:`to_json` wrote (figures with all their samples, ratios, tagged notes)."""
        figures = [
            Figure(f["section"], f["name"], f["unit"], tuple(f["samples"]), f["higher_is_better"], f["note"])
            for f in data["figures"]
        ]
        by_title = {f"{f.section} / {f.name}": f for f in figures}
        ratios = [
            Ratio(r["name"], by_title[r["numerator"]], by_title[r["denominator"]], r["target"], r["paired"])
            for r in data["ratios"]
        ]
        notes = list(data["notes"])
        tags = list(data.get("note_sections", [""] * len(notes)))
        return cls(dict(data["machine"]), figures, ratios, notes, tags)

    def merged_into(
        self, old: Report, regenerated: Sequence[str], machines: Mapping[str, Mapping[str, Any]] | None = None
    ) -> Report:
        """``old`` with the sections this report measured replaced by this report's.

        A section of ``old`` is replaced when this report has figures under its title; its ratios
        (by the numerator's section) go with it, and so do its notes tagged with a key in
        ``regenerated`` (untagged notes of an old report are kept). The machine block stays the old
        report's; a note per regenerated section records the threads and load it ran with (its entry
        in ``machines``, else this report's machine).
        """
        titles = {f.section for f in self.figures}
        ran = []
        for key in regenerated:
            machine = (machines or {}).get(key, self.machine)
            state = ", ".join(
                f"{name} {machine[name]}"
                for name in ("torch threads", "load average at start (1/5/15 min)")
                if name in machine
            )
            ran.append((f"{key}: measured in a later run than the machine block above ({state})", key))
        keep_notes = [
            (note, tag)
            for note, tag in zip(old.notes, old.note_sections, strict=True)
            if tag not in regenerated
        ]
        return Report(
            old.machine,
            [f for f in old.figures if f.section not in titles] + self.figures,
            [r for r in old.ratios if r.numerator.section not in titles] + self.ratios,
            [n for n, _ in keep_notes] + self.notes + [n for n, _ in ran],
            [t for _, t in keep_notes] + self.note_sections + [t for _, t in ran],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "figures": [
                {
                    "section": f.section,
                    "name": f.name,
                    "unit": f.unit,
                    "median": f.median,
                    "min": f.minimum,
                    "max": f.maximum,
                    "samples": list(f.samples),
                    "higher_is_better": f.higher_is_better,
                    "note": f.note,
                }
                for f in self.figures
            ],
            "ratios": [
                {
                    "name": r.name,
                    "numerator": f"{r.numerator.section} / {r.numerator.name}",
                    "denominator": f"{r.denominator.section} / {r.denominator.name}",
                    "median": r.median,
                    "min": min(r.samples),
                    "max": max(r.samples),
                    "paired": r.is_paired,
                    "target": r.target,
                    "met": r.met,
                }
                for r in self.ratios
            ],
            "notes": self.notes,
            "note_sections": self.note_sections
            if len(self.note_sections) == len(self.notes)
            else [""] * len(self.notes),
        }

    def to_markdown(self, title: str = "fedsimenv benchmark report") -> str:
        lines = [f"# {title}", "", "## Machine", ""]
        lines += [f"- {key}: {value}" for key, value in self.machine.items()]
        sections: dict[str, list[Figure]] = {}
        for f in self.figures:
            sections.setdefault(f.section, []).append(f)
        for section, figures in sections.items():
            lines += ["", f"## {section}", "", "| figure | unit | median | min | max | repeats | note |"]
            lines.append("|---|---|---:|---:|---:|---:|---|")
            for f in figures:
                lines.append(
                    f"| {f.name} | {f.unit} | {_fmt(f.median)} | {_fmt(f.minimum)} | {_fmt(f.maximum)} "
                    f"| {len(f.samples)} | {f.note} |"
                )
        if self.ratios:
            lines += ["", "## Ratios (same run)", "", "| ratio | median | min | max | how | target | met |"]
            lines.append("|---|---:|---:|---:|---|---:|---|")
            for r in self.ratios:
                how = "paired repeats" if r.is_paired else "ratio of medians"
                target = "" if r.target is None else f">= {r.target:g}"
                met = "" if r.met is None else ("yes" if r.met else "**no**")
                lines.append(
                    f"| {r.name} | {r.median:.2f}x | {min(r.samples):.2f}x | {max(r.samples):.2f}x "
                    f"| {how} | {target} | {met} |"
                )
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def write(self, markdown_path: Path, json_path: Path) -> None:
        write_text_atomic(markdown_path, self.to_markdown())
        write_text_atomic(json_path, json.dumps(self.to_json(), indent=2) + "\n")


def _fmt(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.3e}"


def machine_description() -> dict[str, Any]:
    """CPU model, cores, torch threads and versions, GPU if any, load at start (Linux-centric)."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    description: dict[str, Any] = {
        "cpu": cpu_model,
        "logical cores (usable)": usable,
        "torch threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    if hasattr(os, "getloadavg"):
        description["load average at start (1/5/15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return description
