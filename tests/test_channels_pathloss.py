"""Path loss against the published equations, written out here independently of channels/.

References: Friis in its textbook dB form ``FSPL = 20 log10(d_km) + 20 log10(f_MHz) + 32.45``;
3GPP TR 38.901 Table 7.4.1-1 (UMa, UMi street canyon) and Table 7.4.2-1 (LOS probability).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest

from channels import PATH_LOSS_MODELS
from channels.base import PathLossModel
from channels.pathloss_3gpp import UMaParams, UMaPathLoss, UMiParams, UMiPathLoss


def _model(name: str, **params: object) -> PathLossModel:
    cls = PATH_LOSS_MODELS.get(name)
    return cls(cls.Params.model_validate(params))


def _pl(model: PathLossModel, d: float, los: bool | None = None) -> float:
    los_arr = None if los is None else np.array([los])
    return float(model.path_loss_db(np.array([d]), los_arr)[0])


def test_friis_matches_the_textbook_db_form() -> None:
    model = _model("free-space", carrier_freq_hz=2.4e9)
    for d in (10.0, 250.0, 1000.0):
        expected = 20 * math.log10(d / 1e3) + 20 * math.log10(2400.0) + 32.45
        assert _pl(model, d) == pytest.approx(expected, abs=0.01)


def test_log_distance_with_friis_and_explicit_reference() -> None:
    model = _model("log-distance", exponent=3.5, reference_distance_m=1.0, carrier_freq_hz=2.4e9)
    fspl_1m = 20 * math.log10(1e-3) + 20 * math.log10(2400.0) + 32.45
    assert _pl(model, 100.0) == pytest.approx(fspl_1m + 35.0 * 2, abs=0.01)
    model = _model("log-distance", exponent=2.0, reference_distance_m=10.0, reference_loss_db=60.0)
    assert _pl(model, 1000.0) == pytest.approx(60.0 + 20.0 * 2)


def test_macro_cell_from_the_registry() -> None:
    assert _pl(_model("macro-cell"), 250.0) == pytest.approx(128.1 + 37.6 * math.log10(0.25))


# --- TR 38.901, written out from Table 7.4.1-1 -------------------------------------------------


def _uma_reference(d2d: float, fc_ghz: float, h_bs: float, h_ut: float, los: bool) -> float:
    d2d = max(d2d, 10.0)
    d3d = math.sqrt(d2d**2 + (h_bs - h_ut) ** 2)
    d_bp = 4 * (h_bs - 1.0) * (h_ut - 1.0) * fc_ghz * 1e9 / 3e8
    if d2d <= d_bp:
        pl_los = 28.0 + 22 * math.log10(d3d) + 20 * math.log10(fc_ghz)
    else:
        pl_los = (
            28.0
            + 40 * math.log10(d3d)
            + 20 * math.log10(fc_ghz)
            - 9 * math.log10(d_bp**2 + (h_bs - h_ut) ** 2)
        )
    if los:
        return pl_los
    pl_nlos = 13.54 + 39.08 * math.log10(d3d) + 20 * math.log10(fc_ghz) - 0.6 * (h_ut - 1.5)
    return max(pl_los, pl_nlos)


def _umi_reference(d2d: float, fc_ghz: float, h_bs: float, h_ut: float, los: bool) -> float:
    d2d = max(d2d, 10.0)
    d3d = math.sqrt(d2d**2 + (h_bs - h_ut) ** 2)
    d_bp = 4 * (h_bs - 1.0) * (h_ut - 1.0) * fc_ghz * 1e9 / 3e8
    if d2d <= d_bp:
        pl_los = 32.4 + 21 * math.log10(d3d) + 20 * math.log10(fc_ghz)
    else:
        pl_los = (
            32.4
            + 40 * math.log10(d3d)
            + 20 * math.log10(fc_ghz)
            - 9.5 * math.log10(d_bp**2 + (h_bs - h_ut) ** 2)
        )
    if los:
        return pl_los
    pl_nlos = 35.3 * math.log10(d3d) + 22.4 + 21.3 * math.log10(fc_ghz) - 0.3 * (h_ut - 1.5)
    return max(pl_los, pl_nlos)


DISTANCES_M = [1.0, 10.0, 35.0, 100.0, 209.0, 211.0, 559.0, 561.0, 1000.0, 4000.0]


@pytest.mark.parametrize("fc_ghz", [0.7, 3.5, 28.0])
@pytest.mark.parametrize("h_ut", [1.5, 5.0])
@pytest.mark.parametrize("los", [True, False])
def test_uma_matches_table_7_4_1_1(fc_ghz: float, h_ut: float, los: bool) -> None:
    condition: Literal["los", "nlos"] = "los" if los else "nlos"
    model = UMaPathLoss(UMaParams(carrier_freq_hz=fc_ghz * 1e9, ut_height_m=h_ut, condition=condition))
    got = model.path_loss_db(np.array(DISTANCES_M))
    expected = [_uma_reference(d, fc_ghz, 25.0, h_ut, los) for d in DISTANCES_M]
    np.testing.assert_allclose(got, expected, atol=1e-9)


@pytest.mark.parametrize("fc_ghz", [0.7, 3.5, 28.0])
@pytest.mark.parametrize("h_ut", [1.5, 5.0])
@pytest.mark.parametrize("los", [True, False])
def test_umi_street_canyon_matches_table_7_4_1_1(fc_ghz: float, h_ut: float, los: bool) -> None:
    condition: Literal["los", "nlos"] = "los" if los else "nlos"
    model = UMiPathLoss(UMiParams(carrier_freq_hz=fc_ghz * 1e9, ut_height_m=h_ut, condition=condition))
    got = model.path_loss_db(np.array(DISTANCES_M))
    expected = [_umi_reference(d, fc_ghz, 10.0, h_ut, los) for d in DISTANCES_M]
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_breakpoint_distance_at_3_5_ghz() -> None:
    # d'BP = 4 (25 - 1)(1.5 - 1) 3.5e9 / 3e8 = 560 m: PL1 just below, PL2 just above, and the two
    # pieces meet (the report makes them continuous up to the rounding of its constants).
    model = UMaPathLoss(UMaParams(carrier_freq_hz=3.5e9, condition="los"))
    below, above = model.path_loss_db(np.array([559.999, 560.001]))
    d3d = math.sqrt(560.0**2 + 23.5**2)
    assert below == pytest.approx(28.0 + 22 * math.log10(d3d) + 20 * math.log10(3.5), abs=1e-3)
    assert above == pytest.approx(below, abs=0.5)


def test_probabilistic_condition_uses_the_given_los_state() -> None:
    model = _model("3gpp-umi", carrier_freq_hz=3.5e9)
    los = model.path_loss_db(np.array([300.0, 300.0]), np.array([True, False]))
    assert los[0] == pytest.approx(_umi_reference(300.0, 3.5, 10.0, 1.5, True))
    assert los[1] == pytest.approx(_umi_reference(300.0, 3.5, 10.0, 1.5, False))
    with pytest.raises(ValueError, match="los"):
        model.path_loss_db(np.array([300.0]))


# --- Table 7.4.2-1 --------------------------------------------------------------------------


def _uma_p_los(d: float, h_ut: float) -> float:
    if d <= 18:
        return 1.0
    c = 0.0 if h_ut <= 13 else ((h_ut - 13) / 10) ** 1.5
    return (18 / d + math.exp(-d / 63) * (1 - 18 / d)) * (1 + c * 5 / 4 * (d / 100) ** 3 * math.exp(-d / 150))


def _umi_p_los(d: float) -> float:
    return 1.0 if d <= 18 else 18 / d + math.exp(-d / 36) * (1 - 18 / d)


@pytest.mark.parametrize("h_ut", [1.5, 13.0, 18.0, 22.5])
def test_uma_los_probability(h_ut: float) -> None:
    d = np.array([5.0, 18.0, 50.0, 100.0, 300.0, 1000.0])
    model = UMaPathLoss(UMaParams(ut_height_m=h_ut))
    np.testing.assert_allclose(model.los_probability(d), [_uma_p_los(x, h_ut) for x in d], rtol=1e-12)


def test_umi_los_probability() -> None:
    d = np.array([5.0, 18.0, 50.0, 100.0, 300.0, 1000.0])
    model = UMiPathLoss(UMiParams())
    np.testing.assert_allclose(model.los_probability(d), [_umi_p_los(x) for x in d], rtol=1e-12)


@pytest.mark.parametrize("name", PATH_LOSS_MODELS.names())
def test_negative_distance_is_rejected_and_path_loss_grows_with_distance(name: str) -> None:
    model = _model(name)
    with pytest.raises(ValueError, match=r"distance_m must be >= 0"):
        model.path_loss_db(np.array([10.0, -1.0]), np.array([True, True]))
    d = np.linspace(20.0, 3000.0, 50)
    for los in (True, False):
        pl = model.path_loss_db(d, np.full(50, los))
        assert np.all(np.diff(pl) > 0)


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("3gpp-uma", {"carrier_freq_hz": 200e9}, "carrier_freq_hz"),
        ("3gpp-umi", {"ut_height_m": 0.5}, "ut_height_m"),
        ("3gpp-uma", {"condition": "maybe"}, "condition"),
        ("log-distance", {"exponent": 0.5}, "exponent"),
        ("free-space", {"carrier_freq_hz": -1.0}, "carrier_freq_hz"),
    ],
)
def test_bad_params_name_the_field(name: str, params: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        PATH_LOSS_MODELS.get(name).Params.model_validate(params)
