"""Stochastic uniform quantisation with per-tensor scaling, error feedback, and exact bit counts.

**Quantiser** (:func:`stochastic_quantise`). A tensor ``x`` with scale ``s = max |x|`` is mapped onto
the ``2^b`` evenly spaced levels ``-s + j * delta``, ``delta = 2 s / (2^b - 1)``, ``j = 0 .. 2^b - 1``;
each entry is rounded to the level below or above it at random with the probability that makes the
result unbiased: ``E[Q(x)] = x`` (QSGD-style stochastic rounding, Alistarh et al., NeurIPS 2017, with
a max-norm scale). On the wire a tensor is ``b`` bits per sent value plus one 32-bit float scale.
The per-entry error is below ``delta`` and its variance below ``delta^2 / 4``.

**Nearest quantiser** (:func:`nearest_quantise`): deterministic and biased, but a contraction
(``|Q(x) - x| <= |x|`` entrywise): the scaled sign ``mean|x| sign(x)`` at one bit (EF-SignSGD), nearest
rounding onto the zero-centred grid ``j s / L``, ``L = 2^(b-1) - 1``, ``s = max|x|``, at ``b >= 2``.

**Error feedback** (:class:`ErrorFeedback`; Seide et al. 2014, Karimireddy et al. ICML 2019): each
device keeps the residual ``e = (u + e) - Q(u + e)`` of its last quantised update ``u`` and adds it to
its next update, so quantisation errors are sent later instead of lost. The analysis needs a
contraction ``|Q(p) - p|^2 <= (1 - delta) |p|^2``, so error feedback uses the nearest quantiser by
default. Its residual is bounded for ``b >= 2``: ``|e|_inf <= s / (2L)`` with ``s <= U + |e|_inf`` for
updates ``|u|_inf <= U``, so ``|e|_inf <= U / (2L - 1)`` (``U`` at two bits). The stochastic quantiser
has ``|e|_inf < delta = 2 s / (2^b - 1)``, hence ``|e|_inf < 2 U / (2^b - 3)`` for ``b >= 2``; at one
bit (levels ``+-s``, no zero) it is not a contraction, its residual grows without bound and training
diverges (measured: accuracy 0.10 on tiny), so that combination is refused.

**Bits** (:func:`compressed_bits`): a tensor sent with a keep-mask costs ``kept x b`` for its values,
32 bits for its scale and, for an unstructured mask, one bit per entry of the mask (the index
overhead of the sparse encoding; a structured sub-model needs none, its shape says what is kept).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

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


def nearest_quantise(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Deterministic, biased quantisation of ``x`` to ``bits`` bits: a *contraction*, as error
    feedback needs (Karimireddy et al., ICML 2019: ``|C(x) - x|^2 <= (1 - delta) |x|^2``).

    * ``bits = 1``: the scaled sign ``mean|x| * sign(x)`` of EF-SignSGD (zero entries get ``+``);
      ``delta = |x|_1^2 / (d |x|_2^2)``.
    * ``bits >= 2``: nearest rounding onto the ``2L + 1`` levels ``j s / L``, ``j = -L .. L``,
      ``L = 2^(bits-1) - 1``, ``s = max |x|`` (zero is a level, so ``|Q(x)_i - x_i| <= |x_i|`` for
      every entry and the largest entry is exact). One code of the ``2^bits`` stays unused.

    On the wire: ``bits`` per value plus one 32-bit scale, as :func:`stochastic_quantise`.
    ``bits = 32`` returns ``x`` unchanged.
    """
    _check_bits(bits)
    if bits == 32 or x.numel() == 0:
        return x.clone()
    work = x.detach().to(torch.float64)
    if bits == 1:
        signs = torch.where(work >= 0, 1.0, -1.0).to(torch.float64)
        return (work.abs().mean() * signs).to(x.dtype)
    scale = work.abs().max()
    if scale == 0:
        return x.clone()
    half = 2 ** (bits - 1) - 1
    step = scale / half
    result: torch.Tensor = (torch.round(work / step).clamp(-half, half) * step).to(x.dtype)
    return result


#: The quantisers by name: ``stochastic`` (unbiased, for plain averaging) and ``nearest`` (a biased
#: contraction, for error feedback).
QUANTISER_NAMES = ("stochastic", "nearest")


def quantise(x: torch.Tensor, bits: int, generator: torch.Generator, quantiser: str) -> torch.Tensor:
    """``x`` through the quantiser named ``quantiser`` (one of :data:`QUANTISER_NAMES`)."""
    if quantiser == "stochastic":
        return stochastic_quantise(x, bits, generator)
    if quantiser == "nearest":
        return nearest_quantise(x, bits)
    raise ValueError(f"quantiser must be one of {', '.join(QUANTISER_NAMES)}, got {quantiser!r}")


def quantise_state(
    state: Mapping[str, torch.Tensor],
    bits: int,
    generator: torch.Generator,
    masks: Mapping[str, torch.Tensor] | None = None,
    quantiser: str = "stochastic",
) -> dict[str, torch.Tensor]:
    """Quantise every floating-point tensor of ``state`` on its own scale; pruned entries (mask False)
    are not sent (they neither set the scale nor draw noise) and come back as zero; integer tensors
    (counters) pass unchanged."""
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not value.is_floating_point():
            out[name] = value.clone()
            continue
        mask = masks.get(name) if masks else None
        if mask is None:
            out[name] = quantise(value, bits, generator, quantiser)
            continue
        keep = mask.to(value.device).bool()
        sent = torch.zeros_like(value)
        sent[keep] = quantise(value[keep], bits, generator, quantiser)
        out[name] = sent
    return out


def _check_contraction(bits: int, quantiser: str) -> None:
    _check_bits(bits)
    if quantiser == "stochastic" and bits == 1:
        raise ValueError(
            "error feedback with the 1-bit stochastic quantiser diverges (not a contraction); "
            "use quantiser 'nearest' (scaled sign)"
        )


class ErrorFeedback:
    """Per-device quantisation residuals (EF-SGD, Karimireddy et al. 2019): ``send(device, update)``
    quantises ``p = update + residual`` and keeps ``p - Q(p)`` for the device's next update.

    The residual of a device that is not selected waits, unchanged, for its next upload. Entries the
    current mask prunes are neither sent nor kept (the coordinate is out of the model; keeping its
    residual would resend a pruned weight later). The quantiser must be a contraction for the residual
    to stay bounded: ``nearest`` (the default) is one; the unbiased ``stochastic`` quantiser is not
    (at one bit its error variance ``sum s^2 - x_i^2`` is many times ``|x|^2``) and makes the residual
    grow without bound there.

    Args:
        bits: Bits per sent value (a ``send`` may override it for one upload).
        quantiser: One of :data:`QUANTISER_NAMES`.
    """

    def __init__(self, bits: int, quantiser: str = "nearest") -> None:
        _check_bits(bits)
        if quantiser not in QUANTISER_NAMES:
            raise ValueError(f"quantiser must be one of {', '.join(QUANTISER_NAMES)}, got {quantiser!r}")
        _check_contraction(bits, quantiser)
        self.bits = bits
        self.quantiser = quantiser
        self.residuals: dict[int, dict[str, torch.Tensor]] = {}

    def reset(self) -> None:
        self.residuals = {}

    def send(
        self,
        device: int,
        update: Mapping[str, torch.Tensor],
        generator: torch.Generator,
        masks: Mapping[str, torch.Tensor] | None = None,
        bits: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The quantised ``update + residual`` the device uploads (at ``bits``, default the
        instance's); its residual becomes what was lost on the kept entries."""
        residual = self.residuals.get(device, {})
        corrected = {
            name: value + residual[name] if name in residual else value.clone()
            for name, value in update.items()
            if value.is_floating_point()
        }
        width = self.bits if bits is None else bits
        _check_contraction(width, self.quantiser)
        sent = quantise_state(corrected, width, generator, masks, self.quantiser)
        kept: dict[str, torch.Tensor] = {}
        for name, value in corrected.items():
            lost = value - sent[name]
            mask = masks.get(name) if masks else None
            kept[name] = lost if mask is None else torch.where(mask.to(lost.device).bool(), lost, 0.0)
        self.residuals[device] = kept
        return sent

    def residual_norm(self, device: int) -> float:
        """L2 norm of the device's residual over all tensors (0 before its first upload)."""
        residual = self.residuals.get(device, {})
        return float(sum(float((r.double() ** 2).sum()) for r in residual.values()) ** 0.5)


def quantised_upload(
    start: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    bits: int | None,
    generator: torch.Generator,
    masks: Mapping[str, torch.Tensor],
    parameters: Collection[str],
) -> dict[str, torch.Tensor]:
    """What the server receives from a device that trained ``start`` into ``state`` and uploads its
    update at ``bits`` bits per value: ``start + Q(state - start)`` on the ``parameters``, with
    the unbiased :func:`stochastic_quantise` (no error feedback: the trainer keeps no per-device state,
    and without feedback the unbiased quantiser is the one that converges). ``bits`` None or 32:
    ``state`` unchanged. Buffers (BatchNorm statistics) pass as trained, in full precision and
    uncounted, as for every method."""
    if bits is None or bits == 32:
        return dict(state)
    floats = {k: v for k, v in state.items() if k in parameters}
    update = {k: v - start[k].to(v.device) for k, v in floats.items()}
    sent = quantise_state(update, bits, generator, masks)
    return {k: start[k].to(v.device) + sent[k] if k in floats else v for k, v in state.items()}


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
