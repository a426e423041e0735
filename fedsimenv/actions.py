"""The canonical action encoding: one ``Box(-1, 1, (C N,))`` vector <-> a :class:`RoundDecision`.

The scenario's ``action.controls`` chooses the C components; the default is the three of
``[select_0..N-1 | rho_0..N-1 | bandwidth_0..N-1]`` and optional ones follow in the order
``power``, ``cpu_freq``, ``rb``, ``quant_bits``:

* select: device k takes part iff ``select_k > selection_threshold``; if none does, the device with
  the largest ``select_k`` is selected (a round always has at least one device);
* rho: ``rho_k = rho_max (a_k + 1) / 2``, an affine map of [-1, 1] onto [0, rho_max];
* bandwidth: a softmax of ``bandwidth_logit_scale * a_k`` over the selected devices only, times B.
  With scale s, two devices' shares can differ by up to ``exp(2 s)``. In OFDMA mode the shares set
  each device's number of resource blocks (largest remainder, :func:`channels.allocate_resource_blocks`);
* power: ``p_k = p_max_k 10^(-power_range_db (1 - a_k) / 20)``: a = 1 is the device's maximum, a = -1
  is ``power_range_db`` below it (without this control every device sends at its maximum);
* cpu_freq: ``f_k = f_max_k (phi + (1 - phi) (a_k + 1) / 2)``, phi = ``cpu_freq_min_fraction``
  (without it every device computes at its maximum);
* rb (OFDMA only): the first resource block of device k, ``round((a_k + 1) / 2 (R - 1))``. Devices
  claim their blocks in order of decreasing block count (ties: lower index first), each taking its
  count of free blocks from its first block upwards, cyclically. Without this control the blocks are
  placed contiguously in device order.
* quant_bits: device k uploads its values at ``levels[round((a_k + 1) / 2 (L - 1))]`` bits, the L
  levels being ``quant_bits_levels`` (default 1, 2, 4, 8, 16, 32); without this control uploads are
  unquantised (the trainer's own encoding).

Out-of-range and non-finite entries are clipped, never rejected: NaN -> 0 (the midpoint), +inf -> 1,
-inf -> -1, then everything is clipped to [-1, 1].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from channels import allocate_resource_blocks
from fedsimenv.config import ActionConfig
from fedsimenv.numeric import clip, make_frozen
from fedsimenv.sim.types import RoundDecision


def sanitize_action(action: ArrayLike, num_devices: int, num_controls: int = 3) -> NDArray[np.float64]:
    """Flatten, check the length, and clip an action as documented in this module."""
    flat = np.asarray(action, dtype=np.float64).reshape(-1)
    size = num_controls * num_devices
    if flat.shape != (size,):
        raise ValueError(
            f"action must have {num_controls} * num_devices = {size} entries "
            f"(action.controls has {num_controls}), got shape {np.shape(action)}"
        )
    # Clip (which also takes +-inf to +-1; NaN stays NaN), then NaN -> 0: the documented rule. After
    # the clip the entry ``argmax`` picks is NaN exactly when some entry is (it returns the first
    # NaN; a fraction of a reduction's cost), so the NaN pass runs only then.
    clipped = clip(flat, -1.0, 1.0)
    largest = clipped[clipped.argmax()]
    if largest != largest:  # NaN
        clipped = np.where(np.isnan(clipped), 0.0, clipped)
    return clipped


def place_resource_blocks(
    counts: NDArray[np.int64], first_block: NDArray[np.int64], num_blocks: int
) -> NDArray[np.int64]:
    """(R,) owner of each RB: devices by decreasing count take free blocks from their first one on."""
    owner = np.full(num_blocks, -1, dtype=np.int64)
    for k in np.argsort(-counts, kind="stable"):
        need, block = int(counts[k]), int(first_block[k]) % max(num_blocks, 1)
        while need > 0:
            if owner[block] < 0:
                owner[block] = k
                need -= 1
            block = (block + 1) % num_blocks
    return owner


def decode_action(
    action: ArrayLike,
    num_devices: int,
    config: ActionConfig,
    total_bandwidth_hz: float,
    *,
    tx_power_max_w: ArrayLike | None = None,
    cpu_freq_max_hz: ArrayLike | None = None,
    num_resource_blocks: int | None = None,
) -> RoundDecision:
    """Decode a canonical action into a feasible :class:`RoundDecision`.

    The device maxima are needed when ``config.controls`` has ``power`` / ``cpu_freq``, and the RB
    count when it has ``rb``.
    """
    controls = config.controls
    a = sanitize_action(action, num_devices, len(controls))
    part = dict(zip(controls, a.reshape(len(controls), num_devices), strict=True))
    select_raw = part["select"]
    selected = select_raw > config.selection_threshold
    # ``argmax`` gives the first True entry if there is one (cheaper than ``.any()``), and the
    # largest entry: the first of the largest, as ``np.max`` would give its value (no NaN here).
    if not selected[selected.argmax()]:
        selected[int(select_raw.argmax())] = True
    pruning_rate = config.rho_max * (part["rho"] + 1.0) / 2.0
    # ``np.where(selected, scale * a, -inf)`` as a masked write (``selected`` is a boolean array).
    logits = config.bandwidth_logit_scale * part["bandwidth"]
    logits[~selected] = -np.inf
    # The largest logit is a selected device's (the others are -inf, the selected ones finite).
    # ``np.add.reduce`` is ``.sum()`` (the same pairwise sum) without the method's wrapper.
    weights = np.exp(logits - logits[logits.argmax()])
    bandwidth_hz = total_bandwidth_hz * weights / np.add.reduce(weights)
    power = freq = owner = value_bits = None
    if "power" in part:
        if tx_power_max_w is None:
            raise ValueError("action.controls has 'power': decode_action needs tx_power_max_w")
        level = 10.0 ** (-config.power_range_db * (1.0 - part["power"]) / 20.0)
        power = np.asarray(tx_power_max_w, dtype=np.float64) * level
    if "cpu_freq" in part:
        if cpu_freq_max_hz is None:
            raise ValueError("action.controls has 'cpu_freq': decode_action needs cpu_freq_max_hz")
        phi = config.cpu_freq_min_fraction
        freq = np.asarray(cpu_freq_max_hz, dtype=np.float64) * (
            phi + (1.0 - phi) * (part["cpu_freq"] + 1.0) / 2.0
        )
    if "rb" in part:
        if num_resource_blocks is None:
            raise ValueError("action.controls has 'rb': decode_action needs num_resource_blocks")
        counts = allocate_resource_blocks(bandwidth_hz / total_bandwidth_hz, num_resource_blocks)
        first = np.rint((part["rb"] + 1.0) / 2.0 * (num_resource_blocks - 1)).astype(np.int64)
        owner = place_resource_blocks(counts, first, num_resource_blocks)
    if "quant_bits" in part:
        levels = np.asarray(config.quant_bits_levels, dtype=np.int64)
        index = np.rint((part["quant_bits"] + 1.0) / 2.0 * (len(levels) - 1)).astype(np.int64)
        value_bits = levels[index]
    return make_frozen(  # ``RoundDecision(...)``, without the frozen constructor's cost
        RoundDecision,
        selected=selected,
        pruning_rate=pruning_rate,
        bandwidth_hz=bandwidth_hz,
        tx_power_w=power,
        cpu_freq_hz=freq,
        resource_block_owner=owner,
        upload_value_bits=value_bits,
    )


def encode_decision(
    selected: ArrayLike,
    pruning_rate: ArrayLike,
    bandwidth_share: ArrayLike,
    config: ActionConfig,
    *,
    tx_power_fraction: ArrayLike | None = None,
    cpu_freq_fraction: ArrayLike | None = None,
    first_resource_block: ArrayLike | None = None,
    num_resource_blocks: int | None = None,
    upload_value_bits: ArrayLike | None = None,
) -> NDArray[np.float32]:
    """The canonical action that decodes to (approximately) the given decision.

    ``bandwidth_share`` is relative (any positive scale). Exact up to float32 rounding where the
    shares of the selected devices are within a factor ``exp(2 * bandwidth_logit_scale)`` of the
    largest; smaller shares are raised to that floor. The optional parts are written only when
    ``config.controls`` has them: ``tx_power_fraction`` = p / p_max and ``cpu_freq_fraction`` =
    f / f_max (default 1: the maxima; clipped to the encodable range), ``first_resource_block``
    with ``num_resource_blocks`` R (default: block 0), ``upload_value_bits`` (each one of
    ``quant_bits_levels``; default the largest level).
    """
    sel = np.asarray(selected, dtype=bool)
    rho = np.asarray(pruning_rate, dtype=np.float64)
    share = np.asarray(bandwidth_share, dtype=np.float64)
    if not sel.any():
        raise ValueError("encode_decision needs at least one selected device")
    if np.any(share[sel] <= 0):
        raise ValueError("bandwidth_share must be > 0 for every selected device")
    n = len(sel)
    select_raw = np.where(sel, 1.0, -1.0)
    rho_raw = 2.0 * rho / config.rho_max - 1.0 if config.rho_max > 0 else np.full_like(rho, -1.0)
    with np.errstate(divide="ignore"):
        log_share = np.where(sel, np.log(np.where(sel, share, 1.0)), -np.inf)
    bandwidth_raw = (log_share - log_share[sel].max()) / config.bandwidth_logit_scale + 1.0
    parts = {"select": select_raw, "rho": rho_raw, "bandwidth": bandwidth_raw}
    if "power" in config.controls:
        x = np.ones(n) if tx_power_fraction is None else np.asarray(tx_power_fraction, dtype=np.float64)
        with np.errstate(divide="ignore"):
            parts["power"] = 1.0 + 20.0 * np.log10(np.clip(x, 1e-300, 1.0)) / config.power_range_db
    if "cpu_freq" in config.controls:
        x = np.ones(n) if cpu_freq_fraction is None else np.asarray(cpu_freq_fraction, dtype=np.float64)
        phi = config.cpu_freq_min_fraction
        parts["cpu_freq"] = 2.0 * (x - phi) / (1.0 - phi) - 1.0 if phi < 1 else np.ones(n)
    if "rb" in config.controls:
        first = (
            np.zeros(n)
            if first_resource_block is None
            else np.asarray(first_resource_block, dtype=np.float64)
        )
        span = max((num_resource_blocks or 1) - 1, 1)
        parts["rb"] = 2.0 * first / span - 1.0
    if "quant_bits" in config.controls:
        parts["quant_bits"] = quant_bits_raw(upload_value_bits, n, config)
    action = np.concatenate([parts[name] for name in config.controls])
    result: NDArray[np.float32] = np.clip(action, -1.0, 1.0).astype(np.float32)
    return result


def quant_bits_raw(
    upload_value_bits: ArrayLike | None, num_devices: int, config: ActionConfig
) -> NDArray[np.float64]:
    """The canonical ``quant_bits`` entries of the given bit widths (None: the largest level)."""
    levels = list(config.quant_bits_levels)
    if upload_value_bits is None:
        index = np.full(num_devices, len(levels) - 1, dtype=np.float64)
    else:
        bits = np.asarray(upload_value_bits).reshape(-1)
        unknown = sorted({int(b) for b in bits if int(b) not in levels or b != int(b)})
        if bits.shape != (num_devices,) or unknown:
            raise ValueError(
                f"upload_value_bits must be {num_devices} values from action.quant_bits_levels "
                f"{levels}, got {np.asarray(upload_value_bits).tolist()}"
            )
        index = np.array([levels.index(int(b)) for b in bits], dtype=np.float64)
    if len(levels) == 1:
        return np.ones(num_devices)
    result: NDArray[np.float64] = 2.0 * index / (len(levels) - 1) - 1.0
    return result
