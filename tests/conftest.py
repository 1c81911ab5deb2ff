import pytest

from tests.doubles.scripted import SCRIPTED_CONFIG, ScriptedPlugin
from twin_server.app import create_app


class FakeClock:
    """A clock whose sleep advances time instantly and records every delay."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(autouse=True)
def _no_twin_environment(monkeypatch):
    """Tests build their config explicitly; a developer's TWIN_* variables must not leak in."""
    import os

    for key in list(os.environ):
        if key.startswith("TWIN_"):
            monkeypatch.delenv(key)


@pytest.fixture
def local_app(tmp_path):
    """The app with the installed plugins and the default local backends in a temp data dir."""

    def build(**config):
        return create_app({"DATA_DIR": str(tmp_path / "data"), **config})

    return build


@pytest.fixture
def scripted():
    return ScriptedPlugin()


@pytest.fixture
def scripted_app(scripted, clock):
    """The app with only the scripted test plugin, a fake clock and no real sleeping."""

    def build(**config):
        return create_app(
            {**SCRIPTED_CONFIG, **config},
            plugins=[scripted],
            entrypoints=False,
            retry_options={"clock": clock, "sleep": clock.sleep},
        )

    return build
