"""Peak memory of a process and all its descendants, sampled from ``/proc`` (Linux; no psutil needed).

A Flower simulation is a driver plus Ray's GCS server, raylet, agents and worker processes, so its
memory is that of the whole process tree. :class:`TreeMemorySampler` polls the tree in a thread and
keeps the peak of the summed resident set size (RSS: shared pages, e.g. libtorch mapped by every Ray
worker, are counted once per process, so this is an upper bound on what the tree costs the machine)
and of the summed proportional set size (PSS: shared pages split between the processes that map them).
For the root process alone the kernel's own high-water mark (VmHWM) is exact and is kept too.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class TreeMemory:
    """What a sampler saw.

    Attributes:
        peak_rss_mib: Peak of the summed RSS over the tree (at least the root's VmHWM).
        peak_pss_mib: Peak of the summed PSS over the tree (0 where smaps_rollup is unreadable).
        max_processes: Most processes seen in the tree at once.
        samples: How many times the tree was sampled.
    """

    peak_rss_mib: float
    peak_pss_mib: float
    max_processes: int
    samples: int


def _parent_pids() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # The command name is in parentheses and may itself contain spaces or parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its living descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parent_pids().items():
        children.setdefault(ppid, []).append(pid)
    tree, frontier = [root_pid], [root_pid]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        tree.extend(frontier)
    return tree


def _kib(path: Path, field: str) -> int:
    """A ``Field:   123 kB`` line of a /proc file, in KiB (0 if the process or the line is gone)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreeMemorySampler:
    """Samples the memory of ``root_pid``'s process tree every ``period_s`` in a daemon thread."""

    def __init__(self, root_pid: int, period_s: float = 0.2) -> None:
        self.root_pid = root_pid
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory-sampler", daemon=True)
        self._peak_rss_kib = 0
        self._peak_pss_kib = 0
        self._root_hwm_kib = 0
        self._max_processes = 0
        self._samples = 0

    def sample(self) -> None:
        tree = process_tree(self.root_pid)
        self._root_hwm_kib = max(self._root_hwm_kib, _kib(PROC / str(self.root_pid) / "status", "VmHWM"))
        rss = sum(_kib(PROC / str(pid) / "status", "VmRSS") for pid in tree)
        pss = sum(_kib(PROC / str(pid) / "smaps_rollup", "Pss") for pid in tree)
        self._peak_rss_kib = max(self._peak_rss_kib, rss)
        self._peak_pss_kib = max(self._peak_pss_kib, pss)
        self._max_processes = max(self._max_processes, len(tree))
        self._samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> TreeMemory:
        self._stop.set()
        self._thread.join()
        return TreeMemory(
            peak_rss_mib=max(self._peak_rss_kib, self._root_hwm_kib) / 1024.0,
            peak_pss_mib=self._peak_pss_kib / 1024.0,
            max_processes=self._max_processes,
            samples=self._samples,
        )


def run_sampled(command: list[str], cwd: Path, timeout_s: float) -> tuple[int, bytes, TreeMemory]:
    """Run ``command`` (stdout discarded) while sampling its process tree's memory; returns its exit
    code, its stderr and the memory figures."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreeMemorySampler(process.pid)
    sampler.start()
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    finally:
        memory = sampler.stop()
    return process.returncode, stderr, memory
