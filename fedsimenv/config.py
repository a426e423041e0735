"""Scenario schema: frozen pydantic v2 models, every unknown key an error, units in field names.

A scenario YAML file is validated into :class:`ScenarioConfig`. Plug-in components (channel models,
pruning methods, rewards, trainers, models) are referred to by registry name; an unknown name fails
validation with the list of allowed names, and a channel component's ``params`` are validated
against that component's own ``Params`` model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fedsimenv.config_system import (
    DEVICE_RANGES,
    MAX_SEED,
    MIN_COHERENCE_TIME_S,
    REGISTRIES,
    AvailabilityConfig,
    CellConfig,
    ChannelConfig,
    ComponentConfig,
    Constant,
    DeviceQuantity,
    DevicesConfig,
    FixedValues,
    LogNormal,
    NameRegistry,
    NetworkConfig,
    PacketErrorConfig,
    ProtocolConfig,
    ResourceBlockConfig,
    UniformRange,
    _Frozen,
    _known_name,
    _list_to_tuple,
    _registry,
)

__all__ = [
    "ACTION_CONTROLS",
    "BASE_CONTROLS",
    "DEVICE_RANGES",
    "MAX_SEED",
    "MIN_COHERENCE_TIME_S",
    "REGISTRIES",
    "ActionConfig",
    "AvailabilityConfig",
    "CellConfig",
    "ChannelConfig",
    "ComponentConfig",
    "Constant",
    "DeviceQuantity",
    "DevicesConfig",
    "EpisodeConfig",
    "FixedValues",
    "LearningConfig",
    "LogNormal",
    "NameRegistry",
    "NetworkConfig",
    "PacketErrorConfig",
    "PartitionConfig",
    "ProtocolConfig",
    "ResourceBlockConfig",
    "RewardConfig",
    "ScenarioConfig",
    "SurrogateConfig",
    "SyntheticDataConfig",
    "UniformRange",
]


class PartitionConfig(_Frozen):
    method: str = Field("dirichlet", description="registry name in fedsimenv.learning.partition.PARTITIONS")
    alpha: float = Field(0.5, gt=0, le=1e6, description="Dirichlet concentration over labels (<= 1e6)")
    min_samples_per_device: int = Field(8, ge=1, le=1_000_000)
    classes_per_device: int = Field(
        2, ge=1, le=100_000, description="label shards per device (method: shards)"
    )
    per_device_test: bool = Field(
        False, description="also evaluate each device on test data following its label mix (DWNP)"
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str, info: ValidationInfo) -> str:
        return _known_name(value, info, "partition")


class SyntheticDataConfig(_Frozen):
    """The synthetic task (dataset: synthetic): Gaussian noise around one random prototype per class."""

    num_samples: int = Field(2000, ge=10, le=10_000_000)
    num_classes: int = Field(10, ge=2, le=100_000)
    input_shape: Annotated[tuple[int, int, int], BeforeValidator(_list_to_tuple)] = Field(
        (1, 8, 8), description="(channels, height, width), each in [1, 4096]"
    )
    noise_std: float = Field(1.0, ge=0, le=1e6)
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @field_validator("input_shape")
    @classmethod
    def _shape_in_range(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if not all(1 <= n <= 4096 for n in value):
            raise ValueError("every dimension must be in [1, 4096]")
        return value


class SurrogateConfig(_Frozen):
    """The fast surrogate trainer (``trainer: surrogate``)."""

    calibration_file: str | None = Field(
        None,
        description="JSON written by `fedsimenv calibrate`: a path, or the name of a file shipped in "
        "the scenarios package; null = the built-in calibration for digits/small-cnn",
    )


class LearningConfig(_Frozen):
    dataset: str = Field("digits", description="registry name in fedsimenv.learning.datasets.DATASETS")
    data_dir: str | None = Field(
        None, description="local directory of cifar10/cifar100/femnist/tinyimagenet files"
    )
    synthetic: SyntheticDataConfig = SyntheticDataConfig()
    norm: Literal["batch", "layer", "group", "none"] | None = Field(
        None, description="normalisation layers; None = the model's default"
    )
    aggregation: str = "masked-fedavg"
    cohort: Literal["auto", "batched", "sequential"] = Field(
        "auto",
        description="local training path; auto = batched when the model allows it and (on a CPU) "
        "one device's minibatch is small enough for batching to pay (learning.cohort.prefer_batched)",
    )
    test_fraction: float = Field(
        0.2, ge=0.01, le=0.9, description="share of the samples held out for testing, in [0.01, 0.9]"
    )
    partition: PartitionConfig = PartitionConfig()
    model: str = "small-cnn"
    pruning: str = "magnitude"
    local_epochs: int = Field(1, ge=1, le=1000)
    batch_size: int = Field(16, ge=1, le=1_000_000)
    learning_rate: float = Field(0.05, gt=0, le=10, description="SGD step size, in (0, 10]")
    momentum: float = Field(0.0, ge=0, lt=1)
    bits_per_param: int = Field(32, ge=1, le=64)
    device: Literal["cpu", "cuda"] = "cpu"
    surrogate: SurrogateConfig = SurrogateConfig()

    @field_validator("dataset", "model", "pruning", "aggregation")
    @classmethod
    def _known_component(cls, value: str, info: ValidationInfo) -> str:
        # The field name is the registry kind (see :func:`fedsimenv.scenario.component_registries`).
        return _known_name(value, info, str(info.field_name))


#: Components of the canonical action, in layout order; the first three are always present.
ACTION_CONTROLS = ("select", "rho", "bandwidth", "power", "cpu_freq", "rb", "quant_bits")
BASE_CONTROLS = ACTION_CONTROLS[:3]


class ActionConfig(_Frozen):
    controls: Annotated[tuple[str, ...], BeforeValidator(_list_to_tuple)] = Field(
        BASE_CONTROLS,
        description="components of the canonical action: select, rho, bandwidth (always) plus any of "
        "power, cpu_freq, rb (rb needs network.access: ofdma), quant_bits; laid out in that order",
    )
    rho_max: float = Field(0.9, ge=0, lt=1, description="largest pruning rate an action can ask for")
    power_range_db: float = Field(
        30.0, gt=0, le=100, description="control power: a in [-1, 1] maps to p_max 10^(-range (1 - a) / 20)"
    )
    cpu_freq_min_fraction: float = Field(
        0.1, gt=0, le=1, description="control cpu_freq: a = -1 maps to this fraction of f_max, a = 1 to f_max"
    )

    quant_bits_levels: Annotated[tuple[int, ...], BeforeValidator(_list_to_tuple)] = Field(
        (1, 2, 4, 8, 16, 32),
        description="control quant_bits: the upload bit widths it chooses from (increasing, each in "
        "1..32; 32 = full precision); a in [-1, 1] picks level round((a + 1) / 2 (L - 1))",
    )

    @field_validator("quant_bits_levels")
    @classmethod
    def _bit_levels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 1 <= b <= 32 for b in value) or list(value) != sorted(set(value)):
            raise ValueError("quant_bits_levels must be strictly increasing integers in [1, 32]")
        return value

    @field_validator("controls")
    @classmethod
    def _known_controls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in ACTION_CONTROLS]
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; allowed: {', '.join(ACTION_CONTROLS)}")
        if len(set(value)) != len(value):
            raise ValueError("each control may be listed once")
        missing = [c for c in BASE_CONTROLS if c not in value]
        if missing:
            raise ValueError(
                f"controls must include {', '.join(BASE_CONTROLS)} (missing {', '.join(missing)})"
            )
        return tuple(c for c in ACTION_CONTROLS if c in value)

    selection_threshold: float = Field(0.0, ge=-1, le=1)
    bandwidth_logit_scale: float = Field(
        5.0,
        gt=0,
        le=50,
        description="softmax temperature: shares can differ by up to exp(2 * scale); at most 50",
    )


class EpisodeConfig(_Frozen):
    max_rounds: int = Field(20, ge=1, le=1_000_000)
    target_accuracy: float | None = Field(None, gt=0, le=1)
    time_budget_s: float | None = Field(
        None,
        gt=0,
        le=1e12,
        description="simulated-time budget (<= 1e12 s); the episode is truncated once it is spent",
    )
    energy_budget_j: float | None = Field(
        None,
        gt=0,
        le=1e12,
        description="device-energy budget (all devices, <= 1e12 J); truncated once it is spent",
    )


class RewardConfig(_Frozen):
    name: str = "accuracy-under-budget"
    params: dict[str, float] = Field(
        default_factory=dict, description="the reward's keyword arguments, finite, |value| <= 1e9"
    )

    @field_validator("params")
    @classmethod
    def _params_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for key, number in value.items():
            if abs(number) > 1e9:
                raise ValueError(f"{key} must be in [-1e9, 1e9]")
        return value

    @model_validator(mode="after")
    def _known_reward(self, info: ValidationInfo) -> RewardConfig:
        rewards = _registry(info, "reward")
        if rewards is None:
            return self
        try:
            rewards.get(self.name)(**self.params)
        except TypeError as err:
            raise ValueError(f"invalid params for reward {self.name!r}: {err}") from None
        return self


class ScenarioConfig(_Frozen):
    """A whole scenario: the world, the learning task and the episode."""

    name: str = "unnamed"
    description: str = ""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    trainer: str = "torch"
    cell: CellConfig = CellConfig()
    network: NetworkConfig = NetworkConfig()
    channel: ChannelConfig = ChannelConfig()
    devices: DevicesConfig = DevicesConfig()
    protocol: ProtocolConfig = ProtocolConfig()
    learning: LearningConfig = LearningConfig()
    action: ActionConfig = ActionConfig()
    episode: EpisodeConfig = EpisodeConfig()
    reward: RewardConfig = RewardConfig()

    @model_validator(mode="after")
    def _rb_control_needs_ofdma(self) -> ScenarioConfig:
        if "rb" in self.action.controls and self.network.access != "ofdma":
            raise ValueError("action.controls: 'rb' needs network.access: ofdma")
        return self

    @field_validator("trainer")
    @classmethod
    def _known_trainer(cls, value: str, info: ValidationInfo) -> str:
        return _known_name(value, info, "trainer")
