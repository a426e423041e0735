"""Device availability as a continuous-time two-state Markov on/off process per device."""

from __future__ import annotations

import numpy as np

from fedsimenv.sim.types import BoolArray, FloatArray


class MarkovAvailability:
    """Independent on/off Markov chains, one per device, advanced lazily in simulated time.

    A device stays on for an Exponential(mean ``1 / on_to_off_rate_per_s``) time, then off for an
    Exponential(mean ``1 / off_to_on_rate_per_s``) time, and so on. The initial state is drawn from the
    stationary distribution ``P(on) = off_to_on / (on_to_off + off_to_on)``. Rates of 0 mean "never
    leaves this state"; with ``on_to_off_rate_per_s = 0`` every device is always on.

    Args:
        num_devices: N.
        on_to_off_rate_per_s: Rate of leaving the on state (1/s).
        off_to_on_rate_per_s: Rate of leaving the off state (1/s).
        rng: Stream for the holding times.
    """

    def __init__(
        self,
        num_devices: int,
        on_to_off_rate_per_s: float,
        off_to_on_rate_per_s: float,
        rng: np.random.Generator,
    ) -> None:
        if on_to_off_rate_per_s < 0 or off_to_on_rate_per_s < 0:
            raise ValueError("availability rates must be >= 0")
        self.on_to_off_rate_per_s = on_to_off_rate_per_s
        self.off_to_on_rate_per_s = off_to_on_rate_per_s
        self.rng = rng
        total = on_to_off_rate_per_s + off_to_on_rate_per_s
        p_on = 1.0 if on_to_off_rate_per_s == 0 else off_to_on_rate_per_s / total
        self.is_on: BoolArray = rng.random(num_devices) < p_on
        self.next_toggle_s: FloatArray = self._holding_times(self.is_on, 0.0)

    def _holding_times(self, is_on: BoolArray, now_s: float) -> FloatArray:
        rate = np.where(is_on, self.on_to_off_rate_per_s, self.off_to_on_rate_per_s)
        with np.errstate(divide="ignore"):
            scale = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)
        draws = self.rng.exponential(1.0, size=is_on.shape)
        return now_s + draws * scale

    def advance_to(self, now_s: float) -> BoolArray:
        """Apply every toggle up to ``now_s`` and return the on/off state at ``now_s``."""
        due = self.next_toggle_s <= now_s
        while due.any():
            toggled_at = self.next_toggle_s[due]
            self.is_on[due] = ~self.is_on[due]
            self.next_toggle_s[due] = self._holding_times(self.is_on[due], 0.0) + toggled_at
            due = self.next_toggle_s <= now_s
        return self.is_on.copy()

    def next_off_time_s(self) -> FloatArray:
        """For devices now on, when they next turn off (inf for devices now off or never leaving)."""
        return np.where(self.is_on, self.next_toggle_s, np.inf)
