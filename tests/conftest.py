from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from exchange.synth.city import CitySummary, generate_city

# Time limits per example only measure how busy the machine is; the suite has its own.
settings.register_profile("onceonly", deadline=None, print_blob=True)
settings.load_profile("onceonly")

DIRTY = {"persons": 3000, "seed": 11, "dirty_rate": 0.03}


@pytest.fixture(scope="session")
def dirty_city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CitySummary]:
    """A small city with every kind of planted fault, generated once per session."""
    out = tmp_path_factory.mktemp("dirty-city")
    return out, generate_city(out, **DIRTY)  # type: ignore[arg-type]
