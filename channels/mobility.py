"""Mobility models: static, random waypoint, Gauss-Markov; devices stay in the cell's annulus.

Positions are Cartesian metres with the base station at the origin; the cell is the annulus
``min_distance_m <= |x| <= radius_m``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from channels.base import MOBILITY_MODELS, MobilityModel
from channels.checks import MAX_STEPS_PER_ADVANCE, WorkLimitError, check_nonnegative
from channels.units import FloatArray


def uniform_in_annulus(
    num_devices: int, radius_m: float, min_distance_m: float, rng: np.random.Generator
) -> FloatArray:
    """(N, 2) points uniform over the area of the annulus ``min_distance_m..radius_m``."""
    r = np.sqrt(rng.uniform(min_distance_m**2, radius_m**2, size=num_devices))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=num_devices)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


def clamp_to_annulus(position_m: FloatArray, radius_m: float, min_distance_m: float) -> FloatArray:
    """Project points radially into the annulus (a safety net against rounding and long steps)."""
    r = np.hypot(position_m[:, 0], position_m[:, 1])
    safe_r = np.where(r > 0, r, 1.0)
    target = np.clip(r, min_distance_m, radius_m)
    scale = np.where(r > 0, target / safe_r, 1.0)
    out = position_m * scale[:, None]
    # A device exactly at the origin has no direction: push it along the x axis.
    out[r == 0, 0] = min_distance_m
    return out


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


@MOBILITY_MODELS.register("static")
class StaticMobility(MobilityModel):
    """Devices do not move (time-correlated fading then uses its own ``speed_mps`` parameter)."""

    provides_speed = False

    def advance(self, dt_s: float) -> FloatArray:
        check_nonnegative("dt_s", dt_s)
        return self.position_m


class RandomWaypointParams(_Frozen):
    min_speed_mps: float = Field(0.5, gt=0, le=150, description="lowest leg speed (> 0 avoids speed decay)")
    max_speed_mps: float = Field(1.5, gt=0, le=150, description="highest leg speed")
    pause_s: float = Field(0.0, ge=0, le=1e6, description="pause at each waypoint (<= 1e6 s)")

    @model_validator(mode="after")
    def _ordered(self) -> RandomWaypointParams:
        if self.min_speed_mps > self.max_speed_mps:
            raise ValueError(
                f"min_speed_mps ({self.min_speed_mps}) must be <= max_speed_mps ({self.max_speed_mps})"
            )
        return self


@MOBILITY_MODELS.register("random-waypoint")
class RandomWaypointMobility(MobilityModel):
    """Random waypoint: walk in a straight line at a uniform random speed to a waypoint drawn uniformly
    over the cell, pause, repeat.

    A leg between two points of the annulus may cut through the inner disk of radius
    ``min_distance_m``; positions are then projected radially back onto that circle.
    """

    Params = RandomWaypointParams
    params: RandomWaypointParams

    def _start(self) -> None:
        n = len(self.position_m)
        self.waypoint_m = uniform_in_annulus(n, self.radius_m, self.min_distance_m, self.rng)
        self.leg_speed_mps = self._draw_speed(n)
        self.pause_left_s = np.zeros(n)
        self.speed_mps = self.leg_speed_mps.copy()

    def _draw_speed(self, n: int) -> FloatArray:
        return self.rng.uniform(self.params.min_speed_mps, self.params.max_speed_mps, size=n)

    def advance(self, dt_s: float) -> FloatArray:
        check_nonnegative("dt_s", dt_s)
        n = len(self.position_m)
        remaining = np.full(n, float(dt_s))
        active = np.flatnonzero(remaining > 0)
        # One iteration per leg or pause that ends inside dt; the loop is over events, not devices.
        for _ in range(MAX_STEPS_PER_ADVANCE + 1):
            if not active.size:
                break
            pause = np.minimum(self.pause_left_s[active], remaining[active])
            self.pause_left_s[active] -= pause
            remaining[active] -= pause
            moving = active[(self.pause_left_s[active] <= 0) & (remaining[active] > 0)]
            if moving.size:
                delta = self.waypoint_m[moving] - self.position_m[moving]
                dist = np.hypot(delta[:, 0], delta[:, 1])
                need_s = dist / self.leg_speed_mps[moving]
                travel_s = np.minimum(need_s, remaining[moving])
                frac = np.divide(travel_s, need_s, out=np.ones_like(need_s), where=need_s > 0)
                self.position_m[moving] += delta * frac[:, None]
                remaining[moving] -= travel_s
                arrived = moving[need_s <= travel_s]
                if arrived.size:
                    self.position_m[arrived] = self.waypoint_m[arrived]
                    self.waypoint_m[arrived] = uniform_in_annulus(
                        arrived.size, self.radius_m, self.min_distance_m, self.rng
                    )
                    self.leg_speed_mps[arrived] = self._draw_speed(arrived.size)
                    self.pause_left_s[arrived] = self.params.pause_s
            active = active[remaining[active] > 1e-12]
        else:
            raise WorkLimitError(
                f"random-waypoint mobility: advancing {dt_s:g} s takes more than {MAX_STEPS_PER_ADVANCE} "
                "legs; make the cell larger, the speeds lower or the rounds shorter"
            )
        self.position_m = clamp_to_annulus(self.position_m, self.radius_m, self.min_distance_m)
        self.speed_mps = np.where(self.pause_left_s > 0, 0.0, self.leg_speed_mps)
        return self.position_m


class GaussMarkovMobilityParams(_Frozen):
    mean_speed_mps: float = Field(1.0, ge=0, le=150, description="long-run mean speed")
    speed_std_mps: float = Field(0.3, ge=0, le=50, description="stationary standard deviation of speed")
    heading_std_rad: float = Field(0.5, ge=0, le=math.pi, description="stationary std of the heading")
    memory: float = Field(0.8, ge=0, le=1, description="alpha per time_step_s: 0 = memoryless, 1 = straight")
    time_step_s: float = Field(
        1.0, ge=1e-3, le=1e6, description="update interval of the discrete model, in [1e-3, 1e6] s"
    )


@MOBILITY_MODELS.register("gauss-markov")
class GaussMarkovMobility(MobilityModel):
    """Gauss-Markov mobility (Liang and Haas, INFOCOM 1999).

    Every ``time_step_s``: ``s' = a s + (1 - a) s_mean + sqrt(1 - a^2) sigma_s w`` and likewise for the
    heading around a per-device mean heading, with ``a = memory``; the device moves ``s dt`` along its
    heading. ``advance(dt)`` takes ``ceil(dt / time_step_s)`` equal sub-steps of length ``h`` with
    ``a = memory^(h / time_step_s)``. At the cell edge (and at the inner circle) the position is
    reflected and the heading and mean heading are mirrored about the boundary's tangent, so devices
    stay inside. Speeds are floored at 0.
    """

    Params = GaussMarkovMobilityParams
    params: GaussMarkovMobilityParams

    def _start(self) -> None:
        n = len(self.position_m)
        p = self.params
        self.mean_heading_rad = self.rng.uniform(0.0, 2.0 * np.pi, size=n)
        self.heading_rad = self.mean_heading_rad.copy()
        self.speed_mps = np.full(n, p.mean_speed_mps)

    def advance(self, dt_s: float) -> FloatArray:
        check_nonnegative("dt_s", dt_s)
        p = self.params
        steps = max(1, math.ceil(dt_s / p.time_step_s - 1e-9)) if dt_s > 0 else 0
        if steps > MAX_STEPS_PER_ADVANCE:
            raise WorkLimitError(
                f"gauss-markov mobility: advancing {dt_s:g} s takes {steps} steps of time_step_s="
                f"{p.time_step_s:g} s, more than {MAX_STEPS_PER_ADVANCE}; raise time_step_s or shorten rounds"
            )
        for _ in range(steps):  # a handful of sub-steps per block, each vectorised over devices
            h = dt_s / steps
            a = p.memory ** (h / p.time_step_s)
            noise = math.sqrt(max(1.0 - a * a, 0.0))
            w = self.rng.standard_normal((2, len(self.position_m)))
            self.speed_mps = np.maximum(
                a * self.speed_mps + (1 - a) * p.mean_speed_mps + noise * p.speed_std_mps * w[0], 0.0
            )
            self.heading_rad = (
                a * self.heading_rad + (1 - a) * self.mean_heading_rad + noise * p.heading_std_rad * w[1]
            )
            step = self.speed_mps * h
            self.position_m = self.position_m + np.stack(
                [step * np.cos(self.heading_rad), step * np.sin(self.heading_rad)], axis=1
            )
            self._reflect()
        return self.position_m

    def _reflect(self) -> None:
        r = np.hypot(self.position_m[:, 0], self.position_m[:, 1])
        outside, inside = r > self.radius_m, r < self.min_distance_m
        hit = outside | inside
        if not hit.any():
            return
        new_r = np.where(outside, 2 * self.radius_m - r, 2 * self.min_distance_m - r)
        safe_r = np.where(r > 0, r, 1.0)
        self.position_m[hit] *= (new_r / safe_r)[hit, None]
        normal = np.arctan2(self.position_m[hit, 1], self.position_m[hit, 0])
        # Mirroring a direction about the tangent: theta -> 2 * normal + pi - theta.
        self.heading_rad[hit] = 2 * normal + np.pi - self.heading_rad[hit]
        self.mean_heading_rad[hit] = 2 * normal + np.pi - self.mean_heading_rad[hit]
        self.position_m = clamp_to_annulus(self.position_m, self.radius_m, self.min_distance_m)
