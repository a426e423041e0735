"""fedsimenv.learning.allocator: glibc's thresholds are raised once, and the environment can say no.

The speed effect (fewer page faults per batched step) is measured in ``python -m bench.cohort``, not
here: the kernel's fault counts on this VM also move with its memory reclaimer, so a test asserting
them would be flaky.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = "from fedsimenv.learning.allocator import keep_freed_memory as k; print(k(), k())"


def _applied(setting: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "FEDSIMENV_KEEP_FREED_MEMORY"}
    if setting is not None:
        env["FEDSIMENV_KEEP_FREED_MEMORY"] = setting
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning is glibc's mallopt")
def test_thresholds_are_raised_unless_the_environment_turns_it_off() -> None:
    assert _applied(None) == "True True"  # mallopt accepted both values; the second call is a no-op
    assert _applied("1") == "True True"
    assert _applied("0") == "False False"
