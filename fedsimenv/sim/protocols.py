"""Round protocols: how a round starts its jobs, when it ends and which arrivals it keeps.

Each protocol is one class registered by name in :data:`PROTOCOLS`; the scenario's
``protocol.name`` selects it and :class:`~fedsimenv.sim.simulator.RoundSimulator` calls its hooks.
Adding a protocol is one subclass of :class:`RoundProtocol` plus one ``@PROTOCOLS.register`` line.

Imports neither gymnasium nor torch (timing plane).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from fedsimenv.config import ProtocolConfig
from fedsimenv.registry import Registry
from fedsimenv.sim.types import STATUS_FAILED, FloatArray

if TYPE_CHECKING:
    from fedsimenv.sim.simulator import RoundSimulator

#: What each optional ``ProtocolConfig`` parameter means, for "protocol X needs Y (...)" errors.
PARAMETER_HINTS = {"deadline_s": "seconds, > 0", "target_updates": "an integer >= 1"}


class RoundProtocol:
    """Base protocol (synchronous): every selected device's job starts at once and the round ends
    when all of them have arrived or failed.

    Args:
        config: The scenario's ``protocol`` section.
    """

    #: ``ProtocolConfig`` fields this protocol cannot run without.
    required: ClassVar[tuple[str, ...]] = ()
    #: True when jobs may stay in flight across rounds (buffered async): a busy device keeps its job,
    #: the env plans those jobs with ``spans_rounds=True``, trains them with ``train_async`` and their
    #: updates carry staleness.
    jobs_span_rounds: ClassVar[bool] = False

    def __init__(self, config: ProtocolConfig) -> None:
        self.config = config

    @classmethod
    def check_config(cls, config: ProtocolConfig) -> None:
        """Raise ``ValueError`` naming each required parameter that ``config`` lacks."""
        for name in cls.required:
            if getattr(config, name) is None:
                raise ValueError(
                    f"protocol {config.name!r} needs {name} ({PARAMETER_HINTS.get(name, 'set')})"
                )

    def admit(
        self, sim: RoundSimulator, starting: NDArray[np.bool_], bandwidth_hz: FloatArray, start_s: float
    ) -> tuple[NDArray[np.bool_], FloatArray]:
        """Which of the ``starting`` devices start a job, and with what bandwidth."""
        return starting, bandwidth_hz

    def on_round_start(self, sim: RoundSimulator) -> None:
        """Called once the round's jobs run (at least one is active): schedule server-side events."""

    def on_job_end(self, sim: RoundSimulator) -> bool:
        """Called after each job ends (``sim.arrivals`` holds this round's arrivals so far). May drop
        the active jobs; returns True when the round ends now even with jobs still active."""
        return False


PROTOCOLS: Registry[type[RoundProtocol]] = Registry("protocol")
PROTOCOLS.register("synchronous")(RoundProtocol)


@PROTOCOLS.register("deadline")
class DeadlineProtocol(RoundProtocol):
    """The round ends at ``deadline_s`` after its start at the latest; late updates are dropped."""

    required = ("deadline_s",)

    def on_round_start(self, sim: RoundSimulator) -> None:
        assert self.config.deadline_s is not None
        sim.env.process(self._deadline(sim, sim.round_index, self.config.deadline_s))

    @staticmethod
    def _deadline(sim: RoundSimulator, round_index: int, deadline_s: float) -> Generator[Any, Any, None]:
        yield sim.env.timeout(deadline_s)
        if sim.round_index == round_index and not sim.round_done.triggered:
            sim.drop_active("deadline")


@PROTOCOLS.register("over-commit")
class OverCommitProtocol(RoundProtocol):
    """The round keeps the first ``target_updates`` arrivals and drops the other jobs."""

    required = ("target_updates",)

    def on_job_end(self, sim: RoundSimulator) -> bool:
        if len(sim.arrivals) == self.config.target_updates:
            sim.drop_active("over-commit")
        return False


@PROTOCOLS.register("async")
class AsyncProtocol(RoundProtocol):
    """Buffered asynchronous aggregation: jobs run across rounds; a round (one aggregation) ends at
    every ``target_updates``-th arrival. New jobs share the band left free by the jobs in flight."""

    required = ("target_updates",)
    jobs_span_rounds = True

    def admit(
        self, sim: RoundSimulator, starting: NDArray[np.bool_], bandwidth_hz: FloatArray, start_s: float
    ) -> tuple[NDArray[np.bool_], FloatArray]:
        # New jobs share the band left free by the jobs in flight, in the decision's proportions.
        total_hz = sim.network.bandwidth_hz
        free_hz = total_hz - sim.job_bandwidth_hz[sim.busy].sum()
        bandwidth_hz = bandwidth_hz * (max(free_hz, 0.0) / total_hz)
        no_band = starting & (bandwidth_hz <= 0)
        sim.mark(no_band, STATUS_FAILED, "no-free-bandwidth", start_s)
        return starting & ~no_band, bandwidth_hz

    def on_job_end(self, sim: RoundSimulator) -> bool:
        return len(sim.arrivals) == self.config.target_updates


def build_protocol(config: ProtocolConfig) -> RoundProtocol:
    """The registered protocol ``config.name``, configured."""
    return PROTOCOLS.get(config.name)(config)
