"""Operator control on ``engram.ctl.*`` (outside ``spaces.>``) and the status report."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from engram_contract.messages.base import Model
from engram_contract.messages.registry import SpaceStatus


class ReloadRequest(Model):
    """``engram.ctl.reload``: hosting workers load ``space`` again from its snapshot
    (``engram replay`` sends it after writing a rebuilt snapshot)."""

    schema_version: Literal[1] = 1
    space: str


class ReloadReply(Model):
    worker: str
    space: str
    hosted: bool = Field(description="False: this worker does not host the space.")
    recovery: str = ""
    applied_seq: int = 0
    memories: int = 0


class StatusRequest(Model):
    """``engram.ctl.status``: every worker answers with a :class:`WorkerStatus`."""

    schema_version: Literal[1] = 1
    space: str | None = Field(default=None, description="Only this space.")


class HostedSpace(Model):
    id: str
    applied_seq: int
    memories: int
    rejected: int
    snapshot_seq: int
    snapshot_at: datetime | None
    recovery: str
    primary: bool = Field(
        default=True, description="This worker writes the space's snapshots and erasures."
    )
    loaded: bool = Field(default=True, description="Held in memory (false: cold, loads on use).")


class FailedSpace(Model):
    id: str
    reason: str


class WorkerStatus(Model):
    worker: str
    spaces: list[HostedSpace]
    failed: list[FailedSpace]
    cold: list[str] = Field(
        default_factory=list,
        description="Spaces served here but not in memory: the next query or write loads one.",
    )
    hosted: int = Field(default=0, description="Spaces placed on this worker.")
    loaded: int = Field(default=0, description="Of them, held in memory.")
    index_bytes: int = Field(default=0, description="Memory of its loaded spaces' indexes.")


class WorkerSummary(Model):
    """One worker in ``GET /api/v1/status``."""

    worker: str
    hosted: int = Field(description="Spaces placed on it (rendezvous over the live workers).")
    loaded: int = Field(description="Of them, held in memory.")
    index_bytes: int = Field(description="Memory held by its loaded spaces' vector indexes.")


class SpaceStatusRow(Model):
    """One space in ``GET /api/v1/status``. Fields a worker reports are ``null``
    while no worker hosts the space."""

    id: str
    status: SpaceStatus
    stream_seq: int | None = Field(description="The WAL's last sequence.")
    wal_bytes: int | None = Field(default=None, description="Bytes the WAL stream holds.")
    max_memories: int = Field(default=0, description="The space's memory quota (0: none).")
    max_bytes: int = Field(default=0, description="The space's WAL byte quota (0: none).")
    applied_seq: int | None
    wal_lag: int | None = Field(description="stream_seq − applied_seq.")
    memories: int | None
    rejected: int | None
    snapshot_seq: int | None
    snapshot_age_s: float | None
    worker: str | None = Field(description="The host reported on (its primary).")
    recovery: str | None
    failed: str | None = Field(description="Why no worker could load the space.")
    hosts: list[str] = Field(
        default_factory=list, description="Workers serving the space, its primary first."
    )
    loaded: bool | None = Field(
        default=None, description="Held in memory by its primary (false: cold); null: no host."
    )
    under_replicated: bool = Field(
        default=False,
        description="Fewer hosts serve it than ENGRAM_SPACE_REPLICAS asks for (not enough "
        "live workers, or a host is still loading it).",
    )


class NatsClusterState(Model):
    """The JetStream cluster as the registry's stream sees it (``null`` on one node)."""

    nodes: list[str] = Field(description="Servers holding a replica of the registry.")
    leader: str | None
    offline: list[str] = Field(description="Replicas that are offline or not current.")
    degraded: bool = Field(description="A node is lost: serving goes on while a quorum lives.")


class StatusResponse(Model):
    spaces: list[SpaceStatusRow]
    workers: list[str] = Field(description="Workers that answered.")
    placement: list[WorkerSummary] = Field(
        default_factory=list, description="What each worker that answered hosts and holds."
    )
    nats_cluster: NatsClusterState | None = Field(
        default=None, description="The JetStream cluster's health; null on a single server."
    )
