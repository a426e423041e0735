from __future__ import annotations

import pytest

from fedsimenv.config import ScenarioConfig
from fedsimenv.scenario import load_scenario


@pytest.fixture(scope="session")
def tiny() -> ScenarioConfig:
    return load_scenario("tiny")
