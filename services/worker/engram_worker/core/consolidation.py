"""Consolidation planning: which densely linked episodic memories to merge into
one semantic memory, the id and the text that memory gets. (Folding the
``consolidate`` command that a plan turns into is the fold's: :mod:`.state`.)"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from engram_contract.ids import derived_id
from engram_contract.messages import MAX_CONSOLIDATE_MEMBERS, ConsolidationSettings
from engram_worker.core.graph import CONSOLIDATED

if TYPE_CHECKING:
    from engram_worker.core.state import SpaceState

_CONTENT_PER_MEMBER = 240


def consolidation_groups(
    state: SpaceState, cs: ConsolidationSettings
) -> list[tuple[str, list[str]]]:
    """Groups of densely linked episodic memories not yet consolidated, as
    ``(semantic memory id, member ids)``, seeded in key order. Deterministic:
    key order throughout. Reads the graph: in a host, call it under the index lock."""
    graph = state.graph
    by_key = state.records.by_key
    taken: set[int] = set()

    def eligible(key: int) -> bool:
        rec = by_key.get(key)
        return (
            rec is not None
            and rec.kind == "episodic"
            and key not in taken
            and all(kind != CONSOLIDATED for _, _, kind in graph.neighbours(key))
        )

    def strong(key: int, among: set[int]) -> int:
        n = 0
        for other, weight, _ in graph.neighbours(key):
            if weight < cs.min_weight:
                break
            n += other in among
        return n

    limit = min(cs.max_size, MAX_CONSOLIDATE_MEMBERS)
    groups: list[tuple[str, list[str]]] = []
    for key in list(by_key):
        if not eligible(key):
            continue
        members = [key]
        for other, weight, _ in graph.neighbours(key):
            if weight < cs.min_weight or len(members) >= limit:
                break
            if eligible(other):
                members.append(other)
        while len(members) >= cs.min_size:
            group = set(members)
            degree = {m: strong(m, group) for m in members}
            pairs = len(members) * (len(members) - 1) / 2
            if sum(degree.values()) / 2 >= cs.min_density * pairs:
                break
            # drop the member (never the seed) with the fewest strong links inside
            weakest = min(members[1:], key=lambda m: (degree[m], -m))
            members.remove(weakest)
        if len(members) < cs.min_size:
            continue
        taken.update(members)
        ids = sorted(by_key[m].id for m in members)
        groups.append((consolidated_id(state.space, ids), ids))
    return groups


def consolidated_content(contents: Iterable[str]) -> str:
    """A consolidated memory's text: its members' texts (cut to a few hundred
    characters each), in stream order."""
    parts = []
    for text in contents:
        text = " ".join(text.split())
        if len(text) > _CONTENT_PER_MEMBER:
            text = text[: _CONTENT_PER_MEMBER - 1].rstrip() + "…"
        parts.append(text)
    return f"Consolidated from {len(parts)} memories: " + " | ".join(parts)


def consolidated_id(space: str, member_ids: list[str]) -> str:
    """The id of the semantic memory made of ``member_ids`` (the same members always
    give the same id, so that two workers deciding alike write one memory)."""
    return "sem-" + derived_id(space, "consolidate", *sorted(member_ids)).lower()
