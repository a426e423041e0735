"""Scenario schema, part 1: the shared base and the system model (cell, network, channel, devices,
round protocol). :mod:`fedsimenv.config` adds learning, action, episode and reward and the whole
:class:`~fedsimenv.config.ScenarioConfig`, and re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)


class _Frozen(BaseModel):
    """Base of every scenario model: immutable, unknown keys refused, numbers finite and strict.

    ``allow_inf_nan=False`` refuses ``.inf``/``.nan`` in every float field (nested models included);
    ``strict=True`` refuses a boolean or a string where a number is expected and a number where a
    boolean or a string is expected (an integer is still accepted for a float field).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


#: Validation-context key of the component registries (kind -> registry). The schema sits below the
#: planes that own those registries, so it cannot import them: :func:`fedsimenv.scenario.load_scenario`
#: passes them in (``model_validate(data, context={REGISTRIES: ...})``) and every component name is
#: then checked, with the allowed names in the error. Without the context only types and ranges are
#: validated; an unknown name then fails where the component is built, with the same message.
REGISTRIES = "registries"

#: Shortest channel coherence time a scenario may give, s (0.1 ms: below a 5G NR slot at 120 km/h
#: and 28 GHz; shorter blocks only cost simulation time).
MIN_COHERENCE_TIME_S = 1e-4

#: Largest seed a scenario may give (what every random generator in use accepts).
MAX_SEED = 2**32 - 1


class NameRegistry(Protocol):
    """What the schema needs of a registry: ``get(name)`` raising ``ValueError`` with the allowed names."""

    def get(self, name: str) -> Any: ...


def _registry(info: ValidationInfo, kind: str) -> NameRegistry | None:
    context = info.context
    if not isinstance(context, Mapping):
        return None
    registries = context.get(REGISTRIES)
    return registries.get(kind) if isinstance(registries, Mapping) else None


def _known_name(value: str, info: ValidationInfo, kind: str) -> str:
    registry = _registry(info, kind)
    if registry is not None:
        registry.get(value)
    return value


class ComponentConfig(_Frozen):
    """A registered component chosen by name, with its own parameters."""

    model: str = Field(description="registry name of the component")
    params: dict[str, Any] = Field(default_factory=dict)


class CellConfig(_Frozen):
    num_devices: int = Field(10, ge=1, le=100_000)
    radius_m: float = Field(500.0, gt=0, le=1e5, description="cell radius, at most 100 km")
    min_distance_m: float = Field(
        10.0, ge=0, le=1e5, description="devices are placed no closer than this (at most 100 km)"
    )

    @model_validator(mode="after")
    def _min_below_radius(self) -> CellConfig:
        if self.min_distance_m >= self.radius_m:
            raise ValueError(
                f"min_distance_m ({self.min_distance_m}) must be smaller than radius_m ({self.radius_m})"
            )
        return self


class ResourceBlockConfig(_Frozen):
    """OFDMA resource blocks (``network.access: ofdma``)."""

    count: int = Field(ge=1, le=10_000, description="number of uplink resource blocks R")
    bandwidth_hz: float = Field(gt=0, le=1e9, description="bandwidth of one resource block W (<= 1 GHz)")
    fading: Literal["independent", "flat"] = Field(
        "independent",
        description="independent: each RB draws its own fading gain from the channel's fading model "
        "(frequency-selective across RBs); flat: every RB sees the device's wideband gain",
    )


class PacketErrorConfig(_Frozen):
    """Packet errors of uploads: Chen et al.'s waterfall ``q = 1 - exp(-m / SNR)`` (off when absent)."""

    waterfall_threshold: float = Field(
        0.023, gt=0, le=1e6, description="m of q = 1 - exp(-m N0 b / (p g)), linear SNR units"
    )
    max_transmissions: int = Field(
        1, ge=1, le=100, description="ARQ: tries per upload, each a full re-send (1 = no retransmission)"
    )


class NetworkConfig(_Frozen):
    bandwidth_hz: float = Field(20e6, gt=0, le=1e11, description="shared uplink bandwidth B (<= 100 GHz)")
    noise_psd_dbm_per_hz: float = Field(-174.0, ge=-250, le=0)
    noise_figure_db: float = Field(0.0, ge=0, le=30, description="receiver noise figure F")
    interference_psd_dbm_per_hz: float | None = Field(
        None, ge=-250, le=0, description="inter-cell interference PSD I0 on every band; null = none"
    )
    tx_power_dbm: float = Field(10.0, ge=-50, le=50, description="device uplink transmit power")
    downlink_bandwidth_hz: float = Field(20e6, gt=0, le=1e11, description="downlink bandwidth (<= 100 GHz)")
    bs_tx_power_dbm: float = Field(33.0, ge=-50, le=70, description="base-station downlink power")
    access: Literal["fdma", "ofdma"] = Field(
        "fdma", description="fdma: real-valued bandwidth shares; ofdma: integer resource blocks"
    )
    resource_blocks: ResourceBlockConfig | None = Field(None, description="needed by access: ofdma")
    packet_error: PacketErrorConfig | None = Field(None, description="null = uploads never fail")

    @model_validator(mode="after")
    def _access_fits(self) -> NetworkConfig:
        rb = self.resource_blocks
        if self.access == "ofdma":
            if rb is None:
                raise ValueError("access 'ofdma' needs resource_blocks (count and bandwidth_hz)")
            if rb.count * rb.bandwidth_hz > self.bandwidth_hz * (1 + 1e-9):
                raise ValueError(
                    f"resource_blocks: count x bandwidth_hz = {rb.count * rb.bandwidth_hz:.6g} Hz exceeds "
                    f"bandwidth_hz = {self.bandwidth_hz:.6g} Hz"
                )
        elif rb is not None:
            raise ValueError("resource_blocks is used only with access: ofdma (allowed access: fdma, ofdma)")
        return self


class ChannelConfig(_Frozen):
    path_loss: ComponentConfig = ComponentConfig(model="macro-cell")
    shadowing_std_db: float = Field(0.0, ge=0, le=30)
    fading: ComponentConfig = ComponentConfig(model="rayleigh")
    coherence_time_s: float | None = Field(
        None,
        ge=MIN_COHERENCE_TIME_S,
        le=1e6,
        description="how often the simulator advances the channel (mobility, shadowing, fading), in "
        "seconds of simulated time, in [1e-4, 1e6] s; null = once per round",
    )
    max_blocks_per_round: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="most coherence blocks one round may span (bounds the simulated work per round); "
        "a longer round stops the run with a clear error",
    )
    shadowing: ComponentConfig | None = Field(
        None, description="shadowing model (e.g. gudmundson); replaces shadowing_std_db when given"
    )
    mobility: ComponentConfig = ComponentConfig(model="static")

    @field_validator("path_loss", "shadowing", "fading", "mobility")
    @classmethod
    def _check_component(cls, value: ComponentConfig | None, info: ValidationInfo) -> ComponentConfig | None:
        # The named model must exist and its params must fit that model's own Params schema.
        import channels

        registries: dict[str, Any] = {
            "path_loss": channels.PATH_LOSS_MODELS,
            "shadowing": channels.SHADOWING_MODELS,
            "fading": channels.FADING_MODELS,
            "mobility": channels.MOBILITY_MODELS,
        }
        if value is not None:
            registries[str(info.field_name)].get(value.model).Params.model_validate(value.params)
        return value

    @model_validator(mode="after")
    def _one_shadowing(self) -> ChannelConfig:
        if self.shadowing is not None and self.shadowing_std_db != 0:
            raise ValueError("give either shadowing_std_db or a shadowing model, not both")
        return self


class Constant(_Frozen):
    """The same value for every device (a plain number in YAML means this)."""

    distribution: Literal["constant"] = "constant"
    value: float


class UniformRange(_Frozen):
    """Values drawn i.i.d. uniformly from [low, high] per device."""

    distribution: Literal["uniform"] = "uniform"
    low: float = Field(ge=0)
    high: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


class LogNormal(_Frozen):
    """Values drawn i.i.d. log-normally: ``median * exp(sigma * Z)``, Z standard normal."""

    distribution: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(ge=0, le=5, description="standard deviation of the natural logarithm (<= 5)")


class FixedValues(_Frozen):
    """One value per device, in device order (the list length must equal cell.num_devices)."""

    distribution: Literal["list"]
    values: list[float] = Field(min_length=1)


def _list_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _number_to_constant(value: Any) -> Any:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return {"distribution": "constant", "value": value}
    return value


#: A per-device quantity: a plain number (the same for all devices), a distribution or a list.
DeviceQuantity = Annotated[
    Constant | UniformRange | LogNormal | FixedValues,
    Field(discriminator="distribution"),
    BeforeValidator(_number_to_constant),
]


class AvailabilityConfig(_Frozen):
    """Two-state Markov on/off availability per device (exponential holding times)."""

    on_to_off_rate_per_s: float = Field(ge=0, le=1e6, description="1 / mean time on (<= 1e6 /s)")
    off_to_on_rate_per_s: float = Field(ge=0, le=1e6, description="1 / mean time off (<= 1e6 /s)")


class DevicesConfig(_Frozen):
    cpu_freq_hz: DeviceQuantity = Field(
        UniformRange(low=0.5e9, high=2e9), description="CPU frequency, in (0, 1e11] Hz"
    )
    flops_per_cycle: DeviceQuantity = Field(
        Constant(value=4.0), description="FLOPs per CPU cycle (phi), in (0, 1e4]"
    )
    tx_power_dbm: DeviceQuantity | None = Field(
        None, description="per-device override of network.tx_power_dbm, in [-50, 50] dBm"
    )
    battery_capacity_j: DeviceQuantity | None = Field(
        None, description="in (0, 1e9] J; null = unlimited battery"
    )
    idle_power_w: float = Field(
        0.0, ge=0, le=1e4, description="power drawn while on but not computing/sending (<= 10 kW)"
    )
    kappa: float = Field(
        1e-28, ge=0, le=1e-20, description="effective switched capacitance (J/cycle/Hz^2, <= 1e-20)"
    )
    availability: AvailabilityConfig | None = Field(None, description="null = always available")
    trace_csv: str | None = Field(
        None,
        description="CSV with one row per device and columns among cpu_freq_hz, flops_per_cycle, "
        "tx_power_dbm, battery_capacity_j; its columns override the fields above",
    )

    @field_validator("cpu_freq_hz", "flops_per_cycle", "battery_capacity_j", "tx_power_dbm")
    @classmethod
    def _in_range(cls, value: Any, info: ValidationInfo) -> Any:
        # Ranges of the per-device quantities (a log-normal's median stands for its values).
        if isinstance(value, Constant):
            smallest = largest = value.value
        elif isinstance(value, UniformRange):
            smallest, largest = value.low, value.high
        elif isinstance(value, LogNormal):
            smallest = largest = value.median
        elif isinstance(value, FixedValues):
            smallest, largest = min(value.values), max(value.values)
        else:
            return value
        low, high, positive = DEVICE_RANGES[str(info.field_name)]
        if positive and smallest <= 0:
            raise ValueError("every device's value must be > 0")
        if smallest < low or largest > high:
            raise ValueError(f"every device's value must be in [{low:g}, {high:g}]")
        return value


#: field -> (lowest, highest, must be > 0) of the per-device quantities.
DEVICE_RANGES: dict[str, tuple[float, float, bool]] = {
    "cpu_freq_hz": (0.0, 1e11, True),
    "flops_per_cycle": (0.0, 1e4, True),
    "battery_capacity_j": (0.0, 1e9, True),
    "tx_power_dbm": (-50.0, 50.0, False),
}


class ProtocolConfig(_Frozen):
    """How a round ends.

    * ``synchronous``: when every selected device has arrived or failed;
    * ``deadline``: at ``deadline_s`` after the round start at the latest; late updates are dropped;
    * ``over-commit``: after the first ``target_updates`` arrivals; the others are dropped;
    * ``async``: buffered asynchronous aggregation: devices keep training across rounds and a round
      (one aggregation) ends at every ``target_updates``-th arrival; each update's staleness is
      reported.

    ``name`` is a name registered in :data:`fedsimenv.sim.protocols.PROTOCOLS`.
    """

    name: str = "synchronous"
    deadline_s: float | None = Field(None, gt=0, le=1e9, description="round deadline (<= 1e9 s)")
    target_updates: int | None = Field(None, ge=1, le=100_000)

    @field_validator("name")
    @classmethod
    def _known_protocol(cls, value: str, info: ValidationInfo) -> str:
        return _known_name(value, info, "protocol")

    @model_validator(mode="after")
    def _needed_params(self, info: ValidationInfo) -> ProtocolConfig:
        protocols = _registry(info, "protocol")
        if protocols is not None:
            protocols.get(self.name).check_config(self)
        return self
