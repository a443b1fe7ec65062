"""What passes between the service and a model replica's process: how to build the replica,
the messages each way over its pipe, and the process's entry point.

Torch-free, like everything the service's HTTP process imports: the model, torch and its
~180 MB stay in the replica's process (service.replica_process), which the entry point imports
only once it runs there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from model.weights_info import WeightsInfo
from service.shared_batch import SharedItem


@dataclass(frozen=True)
class ReplicaConfig:
    """How to build a replica."""

    device: str
    weights: str | None
    compile_lrl: bool
    torch_threads: int
    tune_malloc: bool
    parse_faces: bool
    """Whether the replica finds faces itself (no face workers) and so loads a parser."""
    log_level: str = "info"
    max_faces: int | None = None
    """Most faces retouched per photo where the replica parses itself (ABPN_MAX_FACES)."""


# Service -> replica.
@dataclass(frozen=True)
class WarmUp:
    """Run the warm-up batch (and the LRL's compile); answered by Warmed."""


@dataclass(frozen=True)
class Batch:
    """Retouch the items in block `block`; answered by Done with the same `id`."""

    id: int
    block: str
    items: tuple[SharedItem, ...]


# Replica -> service.
@dataclass(frozen=True)
class Loaded:
    """The weights are loaded and the replica built."""

    info: WeightsInfo
    torch_threads: int
    compiled_lrl: bool
    malloc_tuned: bool


@dataclass(frozen=True)
class Failed:
    """Start-up failed; the replica exits after sending it."""

    reason: str


@dataclass(frozen=True)
class Warmed:
    """The warm-up batch ran; `compiled_lrl` is False if the compile failed (eager)."""

    compiled_lrl: bool


@dataclass(frozen=True)
class ItemDone:
    """An item's result is in the block."""

    faces: int
    untouched: bool
    timings: dict[str, float] = field(default_factory=dict)
    faces_skipped: int = 0


@dataclass(frozen=True)
class ItemFailed:
    """An item failed: `kind` is "out_of_memory" or "failed"."""

    kind: str
    message: str


@dataclass(frozen=True)
class Done:
    """The outcome of Batch `id`, one per item in its order."""

    id: int
    outcomes: tuple[ItemDone | ItemFailed, ...]


def entry(conn: Connection, config: ReplicaConfig) -> None:
    """The replica process's entry point (the spawn target): runs service.replica_process."""
    from service import replica_process

    replica_process.main(conn, config)
