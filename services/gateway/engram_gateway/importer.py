"""Checking an import body (an export's NDJSON) line by line before anything
is written, and spooling the WAL messages it will publish."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
from pydantic import ValidationError

from engram_contract.embedders import Embedder, check_for_new_space
from engram_contract.errors import (
    EngramError,
    InvalidInput,
    error_for,
    field_errors,
    validation_message,
)
from engram_contract.ids import new_id
from engram_contract.messages import (
    MAX_BATCH,
    ConsolidateCommand,
    ExportedMemory,
    ExportEnd,
    ExportHeader,
    LinkCommand,
    Metric,
    RememberCommand,
    SpaceRecord,
    encode_embedding,
    vector_problem,
)
from engram_contract.subjects import CommandVerb

#: Spooled WAL messages stay in memory up to this size, then go to disk.
SPOOL_BYTES = 16 * 1024 * 1024


class Importer:
    """Validates an import body line by line and spools the WAL messages it will
    write. Nothing is published until every line has passed."""

    def __init__(
        self,
        space: str,
        rec: SpaceRecord | None,
        idem_key: str | None,
        embedder: Embedder | None,
    ) -> None:
        self.space = space
        self.rec = rec  # None: the space does not exist (created from the header)
        self.idem_key = idem_key
        self._embedder = embedder  # the space's; None: made from the header when needed
        self.header: ExportHeader | None = None
        self.seen: set[str] = set()
        self.memories = 0
        self.links: list[tuple[int, LinkCommand]] = []
        self.end: tuple[int, ExportEnd] | None = None
        self.lines = 0  # lines read (blank ones too): the numbers errors name
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        #: the checked chunk's commands in order, those with text only waiting for
        #: their vectors (embedded in one batch when the chunk has been checked)
        self._pending: list[tuple[CommandVerb, ConsolidateCommand | RememberCommand]] = []
        self._texts: list[tuple[int, str]] = []  # (index in _pending, text)

    # the target's settings: the space's, or (to be created) the header's
    @property
    def dim(self) -> int:
        if self.rec is not None:
            return self.rec.dim
        assert self.header is not None
        return self.header.settings.dim

    @property
    def metric(self) -> Metric:
        if self.rec is not None:
            return self.rec.metric
        assert self.header is not None
        return self.header.settings.metric

    def embedder(self) -> Embedder:
        """The target's embedder, for memory lines without a vector."""
        if self._embedder is None:
            assert self.header is not None
            settings = self.header.settings
            self._embedder = check_for_new_space(settings.embedder, settings.dim)
        return self._embedder

    def _problem(
        self, n: int, field: str | None, message: str, title: str = "Invalid input"
    ) -> EngramError:
        where = f"line {n}" if field is None else f"line {n}: {field}"
        return error_for(
            400,
            title,
            f"{where}: {message}",
            hint="Nothing was imported. Fix the line (or export again) and retry.",
            errors=[
                {"field": f"line {n}" + ("" if field is None else f".{field}"), "message": message}
            ],
        )

    def command_id(self, n: int, part: str = "") -> str:
        if self.idem_key is None:
            return new_id()
        return f"{self.idem_key}:{n}{part}"

    def check(self, numbered: list[tuple[int, bytes]]) -> None:
        """Validate lines (in order) and spool their commands (the texts without a
        vector embedded in one batch); raises a 400 :class:`EngramError` naming
        the first bad line (or the embedder's error)."""
        for n, raw in numbered:
            self._check_line(n, raw)
        self._spool_pending()

    def _spool_pending(self) -> None:
        if self._texts:
            embedder = self.embedder()
            step = max(1, embedder.max_batch)
            texts = [text for _, text in self._texts]
            for start in range(0, len(texts), step):
                vectors = embedder.embed(texts[start : start + step])
                for (i, _), vec in zip(self._texts[start : start + step], vectors, strict=True):
                    verb, command = self._pending[i]
                    assert isinstance(command, RememberCommand)
                    memory = command.memory.model_copy(
                        update={"embedding_b64": encode_embedding(np.asarray(vec))}
                    )
                    self._pending[i] = (verb, command.model_copy(update={"memory": memory}))
        for verb, body in self._pending:
            data = body.model_dump_json(exclude_none=True).encode()
            self.spool.write(f"{verb}\t{body.command_id}\t".encode() + data + b"\n")
        self._pending.clear()
        self._texts.clear()

    def _check_line(self, n: int, raw: bytes) -> None:
        if not raw.strip():
            return
        if self.end is not None:
            raise self._problem(n, None, 'nothing may follow the {"end": …} line')
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise self._problem(n, None, f"not valid JSON: {exc}", "Malformed JSON") from None
        if not isinstance(doc, dict):
            raise self._problem(n, None, "expected a JSON object")
        if "engram_export" in doc:
            if n != 1:
                raise self._problem(n, None, "the export header may only be the first line")
            self._check_header(n, doc)
            return
        if self.rec is None and self.header is None:
            raise self._problem(
                n,
                None,
                f"space {self.space!r} does not exist and the body has no export header "
                "(line 1) to create it from",
            )
        if "error" in doc and "id" not in doc:
            detail = doc["error"].get("detail") if isinstance(doc["error"], dict) else doc["error"]
            raise self._problem(
                n, None, f"the export failed part-way: {detail}", "Incomplete export"
            )
        if "end" in doc and "id" not in doc:
            try:
                self.end = (n, ExportEnd.model_validate(doc["end"]))
            except ValidationError as exc:
                raise self._invalid(n, exc, "end") from None
            return
        self._check_memory(n, doc)

    def _invalid(self, n: int, exc: ValidationError, prefix: str = "") -> EngramError:
        where = f"line {n}.{prefix}" if prefix else f"line {n}"
        return InvalidInput(
            400,
            "Invalid input",
            f"line {n}: {validation_message(exc, prefix)}",
            hint="Nothing was imported. Fix the line (or export again) and retry.",
            errors=field_errors(exc, where),
        )

    def _check_header(self, n: int, doc: dict[str, Any]) -> None:
        try:
            header = ExportHeader.model_validate(doc)
        except ValidationError as exc:
            raise self._invalid(n, exc) from None
        dim = header.settings.dim
        if self.rec is not None and dim != self.rec.dim:
            raise self._problem(
                n,
                "settings.dim",
                f"the export has dim {dim}, space {self.space!r} has dim {self.rec.dim}",
            )
        if self.rec is None:
            try:
                check_for_new_space(header.settings.embedder, dim)
            except ValueError as exc:
                raise self._problem(n, "settings.embedder", str(exc)) from None
        self.header = header

    def _check_memory(self, n: int, doc: dict[str, Any]) -> None:
        try:
            memory = ExportedMemory.model_validate(doc)
            memory_in = memory.memory_in()
        except ValidationError as exc:
            raise self._invalid(n, exc) from None
        for link in memory.links:
            if link.target not in self.seen:
                raise self._problem(
                    n,
                    "links",
                    f"target {link.target!r} is not a memory on an earlier line",
                )
        if memory.kind == "semantic":
            members = list(dict.fromkeys(memory.members))
            missing = [m for m in members if m not in self.seen]
            if missing:
                raise self._problem(
                    n, "members", f"{missing[0]!r} is not a memory on an earlier line"
                )
            verb: CommandVerb = "consolidate"
            body: ConsolidateCommand | RememberCommand = ConsolidateCommand(
                command_id=self.command_id(n),
                memory_id=memory.id,
                members=members,
                history=memory.history(),
            )
        else:
            vec = memory_in.vector()
            if vec is None:
                self._texts.append((len(self._pending), memory.content))
            else:
                problem = vector_problem(vec, self.dim, self.metric)
                if problem is not None:
                    field = "embedding_b64" if memory.embedding_b64 is not None else "embedding"
                    raise self._problem(n, field, f"{problem} (space {self.space!r})")
            verb = "remember"
            body = RememberCommand.model_construct(
                command_id=self.command_id(n),
                memory=memory_in.model_copy(
                    update={
                        "embedding": None,
                        "embedding_b64": None if vec is None else encode_embedding(vec),
                    }
                ),
                history=memory.history(),
            )
        self._pending.append((verb, body))
        self.seen.add(memory.id)
        self.memories += 1
        for j, link in enumerate(memory.links):
            command = LinkCommand(
                command_id=self.command_id(n, f":link:{j}"),
                source=memory.id,
                target=link.target,
                weight=link.weight,
                kind=link.kind,
            )
            self.links.append((n, command))

    def finish(self) -> None:
        """The whole body has been read: check what only the end can tell."""
        if self.header is None and self.rec is None:
            raise self._problem(1, None, "the body is empty: nothing to import")
        if self.end is not None:
            n, end = self.end
            if (end.memories, end.links) != (self.memories, len(self.links)):
                raise self._problem(
                    n,
                    "end",
                    f"the export says {end.memories} memories and {end.links} links, the body "
                    f"holds {self.memories} and {len(self.links)}: it is incomplete",
                    "Incomplete export",
                )

    def messages(self) -> Iterator[list[tuple[CommandVerb, str, bytes]]]:
        """The WAL messages in order, in batches: memories, then links."""
        self.spool.seek(0)
        batch: list[tuple[CommandVerb, str, bytes]] = []
        for row in self.spool:
            verb, command_id, data = row.rstrip(b"\n").split(b"\t", 2)
            batch.append((verb.decode(), command_id.decode(), data))  # type: ignore[arg-type]
            if len(batch) >= MAX_BATCH:
                yield batch
                batch = []
        for _, link in self.links:
            batch.append(
                ("link", link.command_id, link.model_dump_json(exclude_none=True).encode())
            )
            if len(batch) >= MAX_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
