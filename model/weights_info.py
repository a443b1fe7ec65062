"""What identifies a set of weights, importable without torch (the service's HTTP process
serves it and never loads the model)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeightsInfo:
    """What identifies a set of weights (served by /v1/models and the metrics)."""

    name: str
    version: str
    sha256: str
    path: str | None
