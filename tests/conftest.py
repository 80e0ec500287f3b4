"""Shared test settings: hypothesis runs are derandomised so CI is reproducible; the `test`
model pair is trained once per session into a temporary cache."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def pair_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session-wide pair cache: DSI_ONLINE_CACHE points to a fresh folder."""
    folder = tmp_path_factory.mktemp("pair-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DSI_ONLINE_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def test_pair(pair_cache: Path) -> Path:
    """The folder of the `test` pair (seed 0), trained once for the session (seconds);
    skipped without torch and transformers."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from dsi_online.pair import train_pair

    return train_pair("test", seed=0).path
