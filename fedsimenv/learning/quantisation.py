"""Stochastic uniform quantisation with per-tensor scaling, error feedback, and exact bit counts.

**Quantiser** (:func:`stochastic_quantise`). A tensor ``x`` with scale ``s = max |x|`` is mapped onto
the ``2^b`` evenly spaced levels ``-s + j * delta``, ``delta = 2 s / (2^b - 1)``, ``j = 0 .. 2^b - 1``;
each entry is rounded to the level below or above it at random with the probability that makes the
result unbiased: ``E[Q(x)] = x`` (QSGD-style stochastic rounding, Alistarh et al., NeurIPS 2017, with
a max-norm scale). On the wire a tensor is ``b`` bits per sent value plus one 32-bit float scale.
The per-entry error is below ``delta`` and its variance below ``delta^2 / 4``.

**Error feedback** (:class:`ErrorFeedback`; Seide et al. 2014, Karimireddy et al. ICML 2019): each
device keeps the residual ``e = (u + e) - Q(u + e)`` of its last quantised update ``u`` and adds it to
its next update, so quantisation errors are sent later instead of lost. For ``b >= 2`` the residual is
bounded: ``|e|_inf < delta = 2 max|u + e| / (2^b - 1)``, so with ``|u|_inf <= U`` the scale stays below
``U (2^b - 1) / (2^b - 3)`` and ``|e|_inf < 2 U / (2^b - 3)`` (``2 U`` at two bits). At one bit the two
levels are ``+-s`` and this bound does not hold (it is then measured, not guaranteed).

**Bits** (:func:`compressed_bits`): a tensor sent with a keep-mask costs ``kept x b`` for its values,
32 bits for its scale and, for an unstructured mask, one bit per entry of the mask (the index
overhead of the sparse encoding; a structured sub-model needs none, its shape says what is kept).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: Bits of one per-tensor scale (a float32).
SCALE_BITS = 32


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"quantisation bits must be an integer in [1, 32], got {bits!r}")


def stochastic_quantise(x: torch.Tensor, bits: int, generator: torch.Generator) -> torch.Tensor:
    """Unbiased stochastic uniform quantisation of ``x`` to ``bits`` bits with scale ``max |x|``.

    Returns the dequantised tensor (same shape and dtype): every entry is one of the ``2^bits`` levels
    of the tensor's grid. ``bits = 32`` returns ``x`` unchanged (full precision). The random draws
    come from ``generator`` (on the CPU), so a seed reproduces the result.
    """
    _check_bits(bits)
    if bits == 32 or x.numel() == 0:
        return x.clone()
    work = x.detach().to(torch.float64)
    scale = work.abs().max()
    if scale == 0:
        return x.clone()
    levels = 2**bits - 1
    delta = 2.0 * scale / levels
    position = ((work + scale) / delta).clamp(0.0, float(levels))
    low = position.floor()
    noise = torch.rand(work.shape, generator=generator, dtype=torch.float64).to(work.device)
    index = (low + (noise < position - low).to(torch.float64)).clamp(0.0, float(levels))
    result: torch.Tensor = (index * delta - scale).to(x.dtype)
    return result


def quantise_state(
    state: Mapping[str, torch.Tensor],
    bits: int,
    generator: torch.Generator,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Quantise every floating-point tensor of ``state`` on its own scale; pruned entries (mask False)
    are not sent and come back as zero; integer tensors (counters) pass unchanged."""
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not value.is_floating_point():
            out[name] = value.clone()
            continue
        mask = masks.get(name) if masks else None
        sent = value if mask is None else torch.where(mask.to(value.device), value, 0.0)
        quantised = stochastic_quantise(sent, bits, generator)
        out[name] = quantised if mask is None else torch.where(mask.to(value.device), quantised, 0.0)
    return out


class ErrorFeedback:
    """Per-device quantisation residuals: ``send(device, update)`` quantises ``update + residual`` and
    keeps the new residual for the device's next update.

    Args:
        bits: Bits per sent value.
    """

    def __init__(self, bits: int) -> None:
        _check_bits(bits)
        self.bits = bits
        self.residuals: dict[int, dict[str, torch.Tensor]] = {}

    def reset(self) -> None:
        self.residuals = {}

    def send(
        self,
        device: int,
        update: Mapping[str, torch.Tensor],
        generator: torch.Generator,
        masks: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The quantised ``update + residual`` the device uploads; its residual becomes what was lost.

        A residual entry that the current mask prunes is kept for a later round (it is not sent now).
        """
        residual = self.residuals.get(device, {})
        corrected = {
            name: value + residual[name] if name in residual else value.clone()
            for name, value in update.items()
            if value.is_floating_point()
        }
        sent = quantise_state(corrected, self.bits, generator, masks)
        self.residuals[device] = {name: corrected[name] - sent[name] for name in corrected}
        return sent

    def residual_norm(self, device: int) -> float:
        """L2 norm of the device's residual over all tensors (0 before its first upload)."""
        residual = self.residuals.get(device, {})
        return float(sum(float((r.double() ** 2).sum()) for r in residual.values()) ** 0.5)


def compressed_bits(
    shapes: Mapping[str, torch.Size | tuple[int, ...]],
    masks: Mapping[str, torch.Tensor],
    value_bits: int,
    index_overhead: bool,
) -> float:
    """Exact size in bits of the tensors ``shapes`` sent at ``value_bits`` bits per value.

    Each tensor costs ``kept x value_bits`` (kept = entries its mask keeps; all without a mask) plus
    :data:`SCALE_BITS` for its scale when quantised (``value_bits < 32``), plus one bit per entry of
    its mask when ``index_overhead`` (an unstructured mask travels with the values). A tensor with no
    kept entry is not sent at all (its mask still is, under ``index_overhead``).
    """
    _check_bits(value_bits)
    total = 0
    for name, shape in shapes.items():
        numel = int(torch.Size(shape).numel())
        mask = masks.get(name)
        kept = numel if mask is None else int(mask.sum())
        if kept > 0:
            total += kept * value_bits + (SCALE_BITS if value_bits < 32 else 0)
        if index_overhead and mask is not None:
            total += numel
    return float(total)
