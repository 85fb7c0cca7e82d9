"""Which spaces a client may read or write, creating one on its first write:
the registry's records as the gateway and the SDK over NATS both see them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext

from engram_contract.embedders import (
    DEFAULT_EMBEDDER,
    SEMANTIC_THRESHOLDS,
    Embedder,
    HashNgramEmbedder,
    check_for_new_space,
)
from engram_contract.errors import (
    Conflict,
    LimitReached,
    Unavailable,
    field_error,
    space_not_found,
)
from engram_contract.messages import CreateSpace, LinkSettings, SpaceRecord
from engram_nats.registry import SpaceConflict, SpaceLimitReached, SpaceRegistry
from engram_nats.streams import purge_events

#: JetStream: a stream's max_bytes cannot be reserved (more than the server's store holds)
INSUFFICIENT_STORAGE = 10047


@dataclass(frozen=True)
class SpacePolicy:
    """How spaces are created: the defaults of a new space, whether a write
    creates an unknown space, the limit, and what to tell a client about a
    space that does not exist (surfaces name their own way to create one)."""

    default_dim: int = 384
    default_embedder: str = DEFAULT_EMBEDDER
    auto_create: bool = True
    max_spaces: int | None = None
    default_max_memories: int = 0
    default_max_bytes: int = 0
    create_hint: str = "Create the space first, or write a memory to it."


class SpaceAccess:
    """The registry's records, checked for reading and writing, and the spaces'
    embedders (one instance per name and dim)."""

    def __init__(self, registry: SpaceRegistry, policy: SpacePolicy) -> None:
        # new spaces get these: refuse to start with a pair that cannot embed
        # (ENGRAM_DEFAULT_DIM=768 with e5-small, a typo, openai without a URL)
        try:
            check_for_new_space(policy.default_embedder, policy.default_dim)
        except ValueError as exc:
            raise ValueError(
                f"ENGRAM_DEFAULT_EMBEDDER={policy.default_embedder} with "
                f"ENGRAM_DEFAULT_DIM={policy.default_dim}: {exc}"
            ) from None
        self.registry = registry
        self.policy = policy
        self._embedders: dict[tuple[str, int], Embedder] = {}

    async def record(self, space: str) -> SpaceRecord | None:
        return self.registry.cached(space) or await self.registry.get(space)

    async def for_read(self, space: str) -> SpaceRecord:
        """The record of an active space, else :class:`SpaceNotFound`."""
        rec = await self.record(space)
        if rec is None or rec.status != "active":
            raise space_not_found(space, self.policy.create_hint)
        return rec

    async def for_write(self, space: str, *, create: bool = True) -> SpaceRecord:
        """The record of an active space to write to. An unknown space is created
        (when ``create`` and the policy allow) or is a 404; ``create=False`` is for
        writes about memories that must exist already. A space being deleted is
        a 409."""
        rec = await self.record(space)
        if rec is None:
            if not create:
                raise space_not_found(space, self.policy.create_hint)
            if not self.policy.auto_create:
                raise space_not_found(
                    space, self.policy.create_hint + " (auto-creation of spaces is off)"
                )
            rec, _ = await self.create_or_get(space)
        if rec.status != "active":
            raise Conflict(409, "Space not writable", f"memory space {space!r} is {rec.status}")
        return rec

    async def create_or_get(self, space: str, **asked: Any) -> tuple[SpaceRecord, bool]:
        """The space with the ``asked`` settings (created, ``True``), or the one
        that exists with the same settings (``False``); else a :class:`Conflict`.
        A new space whose links are not asked for gets its embedder's semantic
        threshold (:data:`~engram_contract.embedders.SEMANTIC_THRESHOLDS`)."""
        p = self.policy
        threshold = SEMANTIC_THRESHOLDS.get(asked.get("embedder") or p.default_embedder)
        if threshold is not None and asked.get("links") is None and not await self.record(space):
            asked["links"] = LinkSettings(semantic_threshold=threshold)
        try:
            return await self.registry.create_or_get(
                space,
                default_dim=p.default_dim,
                default_embedder=p.default_embedder,
                default_max_memories=p.default_max_memories,
                default_max_bytes=p.default_max_bytes,
                max_spaces=p.max_spaces,
                **asked,
            )
        except SpaceConflict as exc:
            raise Conflict(
                409,
                "Space conflict",
                str(exc),
                hint="Use another space id, or omit the settings to get the existing space.",
            ) from None
        except SpaceLimitReached as exc:
            raise LimitReached(
                409,
                "Space limit reached",
                str(exc),
                hint="Delete unused spaces or raise ENGRAM_MAX_SPACES.",
            ) from None
        except nats.js.errors.APIError as exc:
            if exc.err_code != INSUFFICIENT_STORAGE:
                raise
            raise self._no_room(asked.get("max_bytes"), exc) from None

    def _no_room(self, asked: int | None, exc: nats.js.errors.APIError) -> Exception:
        """JetStream cannot reserve the space's ``max_bytes``: the request's (a 400
        naming it) or the default's (a 503 for the operator)."""
        why = f"JetStream cannot reserve it for the space's WAL ({exc.description})"
        if asked is not None:
            return field_error(
                "max_bytes", f"{asked} bytes: {why}", hint="Ask for a smaller max_bytes."
            )
        return Unavailable(
            503,
            "Insufficient storage",
            f"the default max_bytes {self.policy.default_max_bytes} "
            f"(ENGRAM_SPACE_MAX_BYTES): {why}",
            hint="Lower ENGRAM_SPACE_MAX_BYTES or give JetStream more storage.",
        )

    async def create(self, body: CreateSpace) -> tuple[SpaceRecord, bool]:
        """:meth:`create_or_get` for a client's request: its embedder must exist,
        make vectors of its dim and be usable here (a 400 listing the embedders
        otherwise). A space asked for with a dim the default embedder cannot make
        (vectors only, say ``dim: 3``) and no embedder gets ``hash-ngram-v1``,
        which makes any dim."""
        name, dim = body.embedder, body.dim or self.policy.default_dim
        if name is None and body.dim is not None:
            try:
                check_for_new_space(self.policy.default_embedder, dim)
            except ValueError:
                name = HashNgramEmbedder.name
        if name is not None:
            try:
                check_for_new_space(name, dim)
            except ValueError as exc:
                raise field_error("embedder", str(exc)) from None
        return await self.create_or_get(
            body.id,
            dim=body.dim,
            metric=body.metric if "metric" in body.model_fields_set else None,
            embedder=name,
            links=body.links,
            decay=body.decay,
            consolidation=body.consolidation,
            max_memories=body.max_memories,
            max_bytes=body.max_bytes,
        )

    async def delete(self, js: JetStreamContext, space: str) -> None:
        """Mark the space deleting, then remove its record and its events (the
        workers delete its stream and snapshot)."""
        rec = await self.registry.mark_deleting(space)
        if rec is None:
            raise space_not_found(space)
        await self.registry.remove(space)
        # its events go too (workers purge again once they have stopped hosting
        # it, for events published in between)
        await purge_events(js, space)

    def embedder(self, rec: SpaceRecord) -> Embedder:
        """The space's embedder (one instance per name and dim)."""
        key = (rec.embedder, rec.dim)
        if key not in self._embedders:
            try:
                embedder = check_for_new_space(rec.embedder, rec.dim)
            except ValueError as exc:  # a space made by a process set up otherwise
                raise Unavailable(
                    503,
                    "Embedder unavailable",
                    f"memory space {rec.id!r} embeds with {rec.embedder!r}, which this "
                    f"process cannot use: {exc}",
                    hint="Send vectors, or give this process the same embedder settings "
                    "as the one that created the space.",
                ) from None
            self._embedders[key] = embedder
        return self._embedders[key]
