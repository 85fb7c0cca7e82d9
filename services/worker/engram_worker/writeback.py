"""What a hosted space writes back into its own WAL: ``reinforce`` commands for
the memories recall returned (so access counts survive restarts and every
replica agrees) and ``consolidate`` commands for the groups consolidation
planning finds (on request, or every ``consolidation.interval_s``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from engram_contract.ids import new_id
from engram_contract.messages import (
    MAX_BATCH,
    ConsolidateCommand,
    ConsolidatedGroup,
    ReinforceCommand,
)
from engram_contract.subjects import command_subject, stream_name
from engram_worker.core.consolidation import consolidation_groups

if TYPE_CHECKING:
    from engram_worker.host import SpaceHost

log = logging.getLogger(__name__)


class WriteBack:
    """Reinforce and consolidate commands of one :class:`SpaceHost`."""

    def __init__(self, host: SpaceHost) -> None:
        self._host = host
        # reinforcement: ids recall returned, written as one command per short while
        self._reinforce: dict[str, None] = {}
        self._reinforce_task: asyncio.Task[None] | None = None
        self._consolidate_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._host.record.consolidation.interval_s > 0:
            self._consolidate_task = asyncio.create_task(self._consolidate_loop())

    async def stop(self) -> None:
        if self._reinforce_task is not None and not self._reinforce_task.done():
            with contextlib.suppress(Exception):  # write what recall returned so far
                await asyncio.wait_for(asyncio.shield(self._reinforce_task), 2.0)
        if self._consolidate_task is not None:
            self._consolidate_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._consolidate_task

    def reinforce(self, memory_ids: list[str]) -> None:
        """Count a recall for these memories: written to the WAL as one ``reinforce``
        command per ``reinforce_delay`` (so access counts survive restarts and every
        replica agrees), folded like any command."""
        if not memory_ids or self._host.retired:
            return
        self._reinforce.update(dict.fromkeys(memory_ids))
        if self._reinforce_task is None or self._reinforce_task.done():
            self._reinforce_task = asyncio.create_task(self._write_reinforcements())

    async def _write_reinforcements(self) -> None:
        while self._reinforce:
            # wait first: the recalls of the next moment join this command
            await asyncio.sleep(self._host.settings.reinforce_delay)
            ids = list(self._reinforce)[:MAX_BATCH]
            for memory_id in ids:
                del self._reinforce[memory_id]
            command = ReinforceCommand(command_id=new_id(), memory_ids=ids)
            try:
                await self._write(command_subject(self._host.space, "reinforce"), command)
            except Exception as exc:  # a recall is never failed by its bookkeeping
                log.warning(
                    "space %s: could not write a reinforce command (%d memories): %r",
                    self._host.space,
                    len(ids),
                    exc,
                )

    async def _write(self, subject: str, command: ReinforceCommand | ConsolidateCommand) -> int:
        ack = await self._host.js.publish(
            subject,
            command.model_dump_json().encode(),
            timeout=10.0,
            stream=stream_name(self._host.space),
            headers={"Nats-Msg-Id": command.command_id},
        )
        return int(ack.seq)

    async def consolidate(
        self, *, dry_run: bool = False
    ) -> tuple[list[ConsolidatedGroup], int | None]:
        """Find groups of densely linked episodic memories and write a ``consolidate``
        command for each (the fold makes the semantic memories). Returns the groups
        and the last command's stream seq."""
        settings = self._host.record.consolidation
        # every memory is looked at each time: a group may become dense long after
        # its members were stored (links added later, a semantic memory forgotten)
        groups, planned_at = await self._host.with_index(
            lambda st: (consolidation_groups(st, settings), st.applied_seq)
        )
        found = [ConsolidatedGroup(memory_id=mid, members=members) for mid, members in groups]
        if dry_run:
            return found, None
        last: int | None = None
        for group in found:
            command = ConsolidateCommand(
                # the same group planned at the same position gets the same command
                # id: JetStream drops a second worker's identical decision as a
                # duplicate (the position makes a later, new decision a new command)
                command_id=f"consolidate:{group.memory_id}:{planned_at}",
                memory_id=group.memory_id,
                members=group.members,
            )
            last = await self._write(command_subject(self._host.space, "consolidate"), command)
        if found:
            log.info("space %s: consolidated %d groups", self._host.space, len(found))
        return found, last

    async def _consolidate_loop(self) -> None:
        every = self._host.record.consolidation.interval_s
        while True:
            await asyncio.sleep(every)
            if not self._host.primary:  # the space's primary host runs the schedule
                continue
            try:
                await self.consolidate()
            except Exception:
                log.exception("space %s: scheduled consolidation failed", self._host.space)
