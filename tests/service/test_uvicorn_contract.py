"""The uvicorn and h11 internals the service builds on (service/http_protocol.py, the drain in
service/server.py) are there, and the installed versions lie within the ranges pyproject.toml
pins: a uvicorn release that moved them has to be tested and the pin widened on purpose."""

from __future__ import annotations

import inspect
from importlib.metadata import version
from pathlib import Path

import h11
import pytest
import uvicorn
from packaging.requirements import Requirement
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; CI and the images run 3.11
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _pin(name: str) -> Requirement:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    found = [Requirement(d) for d in deps if Requirement(d).name == name]
    assert len(found) == 1, f"{name} is not a dependency of its own in pyproject.toml"
    return found[0]


@pytest.mark.parametrize("name", ["uvicorn", "h11"])
def test_pinned_to_a_closed_range_holding_the_installed_version(name: str) -> None:
    pin = _pin(name)
    operators = {spec.operator for spec in pin.specifier}
    assert operators & {">=", ">", "~=", "=="}, f"{pin}: no lower bound"
    assert operators & {"<", "<=", "~=", "=="}, f"{pin}: no upper bound"
    assert pin.specifier.contains(version(name)), f"installed {name} {version(name)} not in {pin}"


def test_the_protocol_hooks_the_service_overrides() -> None:
    for method in ("connection_made", "connection_lost", "on_response_complete"):
        assert callable(getattr(H11Protocol, method)), method
    assert list(inspect.signature(H11Protocol.send_400_response).parameters) == ["self", "msg"]
    source = inspect.getsource(H11Protocol)
    for attribute in ("self.conn", "self.cycle", "self.transport", "self.loop"):
        assert attribute in source, attribute
    cycle = inspect.getsource(RequestResponseCycle)
    for attribute in ("self.disconnected", "self.message_event", "self.response_complete"):
        assert attribute in cycle, attribute
    assert hasattr(h11.Connection(h11.SERVER), "trailing_data")
    assert issubclass(h11.LocalProtocolError, Exception)


def test_the_server_hooks_the_drain_overrides() -> None:
    assert list(inspect.signature(uvicorn.Server.handle_exit).parameters) == [
        "self",
        "sig",
        "frame",
    ]
    assert inspect.iscoroutinefunction(uvicorn.Server.on_tick)
    assert list(inspect.signature(uvicorn.Server.on_tick).parameters) == ["self", "counter"]
    assert "should_exit" in inspect.getsource(uvicorn.Server.on_tick)
    assert "force_exit" in inspect.getsource(uvicorn.Server)
    config = uvicorn.Config(lambda scope, receive, send: None, timeout_graceful_shutdown=3)
    assert config.timeout_graceful_shutdown == 3
    assert "timeout_graceful_shutdown" in inspect.getsource(uvicorn.Server.shutdown)
