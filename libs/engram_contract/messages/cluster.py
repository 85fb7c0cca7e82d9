"""The worker tier's membership: what each worker announces in KV ``ENGRAM_WORKERS``."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from engram_contract.messages.base import Model


class WorkerBeat(Model):
    """A worker's heartbeat, the value of its key (its ``ENGRAM_WORKER_ID``).

    Liveness is judged by the reader from when the beat arrived, not from
    ``beat_at`` (the writer's clock), so clock skew between machines cannot make a
    dead worker look alive."""

    id: str
    instance: str = Field(description="Random per process: two processes with one id differ.")
    started_at: datetime
    beat_at: datetime
    ttl: float = Field(
        gt=0, description="Seconds after this beat's arrival that the worker counts as gone."
    )
    leaving: bool = Field(default=False, description="Shutting down: place its spaces elsewhere.")
