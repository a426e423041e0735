"""Timing plane: the SimPy discrete-event simulation of a federated round over a wireless cell.

Imports neither gymnasium nor torch.
"""

from fedsimenv.sim.simulator import RoundSimulator
from fedsimenv.sim.types import DeviceWorkload, RoundDecision, RoundReport
from fedsimenv.sim.world import DeviceFleet, build_fleet

__all__ = ["DeviceFleet", "DeviceWorkload", "RoundDecision", "RoundReport", "RoundSimulator", "build_fleet"]
