"""The layers, read from the source: which top-level package may import which.

engram_contract (ids, subjects, settings, messages) is the bottom and imports no
other engram package, nor does engram_proto (the code generated from the .proto
files, which the gRPC server and the SDK's gRPC transport use); engram_nats adds
the NATS plumbing on top of it; the SDK
(engram_client) and the two services (engram_gateway, engram_worker) sit on
those two and never on each other; engram_cli may use everything. Nothing that
ships (libs/, services/, cli/) or the ops tools import the test tree. The
worker's core (the fold, the index, activation) is pure: no I/O, no event loop,
no clock and no unseeded randomness, so it can be tested and replayed alone.

Every .py file under libs/, services/, cli/ and ops/ is parsed (not imported), so
an import inside a function or under ``if TYPE_CHECKING`` counts as well.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import module_name

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("libs", "services", "cli", "ops")

ENGRAM = (
    "engram_contract",
    "engram_proto",
    "engram_nats",
    "engram_client",
    "engram_gateway",
    "engram_worker",
    "engram_cli",
)
#: package → the other engram packages it may import
MAY_IMPORT: dict[str, frozenset[str]] = {
    "engram_contract": frozenset(),
    "engram_proto": frozenset(),
    "engram_nats": frozenset({"engram_contract"}),
    "engram_client": frozenset({"engram_contract", "engram_nats", "engram_proto"}),
    "engram_gateway": frozenset({"engram_contract", "engram_nats", "engram_proto"}),
    "engram_worker": frozenset({"engram_contract", "engram_nats"}),
    "engram_cli": frozenset(ENGRAM) - {"engram_cli"},
}
#: what the worker's pure core never imports (top-level module names)
IMPURE = frozenset(
    {"nats", "asyncio", "litestar", "httpx", "uvicorn", "faststream", "time", "random"}
)
CORE = "engram_worker.core"
#: calls that read the clock or draw unseeded randomness without importing time/random
CLOCK_OR_UNSEEDED = ("datetime.now", "datetime.utcnow", "date.today", "default_rng()")


@dataclass(frozen=True)
class Import:
    path: Path  # relative to the repository root
    line: int
    module: str  # the absolute module named, e.g. "engram_nats.registry"

    @property
    def top(self) -> str:
        return self.module.partition(".")[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


@dataclass(frozen=True)
class Source:
    path: Path  # relative to the repository root
    module: str  # e.g. "engram_worker.core.state", or "ops.bench.bench"
    imports: tuple[Import, ...]

    @property
    def package(self) -> str:
        return self.module.partition(".")[0]


def imports_of(rel: Path, module: str, tree: ast.AST) -> tuple[Import, ...]:
    is_package = rel.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            found.append(Import(rel, node.lineno, name))
    return tuple(found)


def load_sources() -> list[Source]:
    sources = []
    for top in SOURCE_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            module = module_name(rel)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
            sources.append(Source(rel, module, imports_of(rel, module, tree)))
    return sources


SOURCES = load_sources()


def test_every_package_is_found() -> None:
    found = {s.package for s in SOURCES}
    assert set(ENGRAM) <= found, f"packages not found under {SOURCE_DIRS}: {set(ENGRAM) - found}"
    assert any(s.module.startswith(f"{CORE}.") for s in SOURCES)


@pytest.mark.parametrize("package", ENGRAM)
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    allowed = MAY_IMPORT[package] | {package}
    offending = [
        str(imp)
        for source in SOURCES
        if source.package == package
        for imp in source.imports
        if imp.top.startswith("engram_") and imp.top not in allowed
    ]
    assert not offending, f"{package} may import only {sorted(MAY_IMPORT[package])}:\n" + "\n".join(
        offending
    )


def test_nothing_that_ships_or_ops_imports_the_tests() -> None:
    offending = [str(imp) for source in SOURCES for imp in source.imports if imp.top == "tests"]
    assert not offending, "the test tree is imported by:\n" + "\n".join(offending)


def test_the_worker_core_is_pure() -> None:
    core = [s for s in SOURCES if s.module == CORE or s.module.startswith(f"{CORE}.")]
    offending = [str(imp) for source in core for imp in source.imports if imp.top in IMPURE]
    assert not offending, (
        f"{CORE} must not import {sorted(IMPURE)} (no I/O, event loop, clock or "
        "unseeded randomness):\n" + "\n".join(offending)
    )


def test_the_worker_core_reads_no_clock_and_draws_no_unseeded_randomness() -> None:
    offending = [
        f"{source.path} calls {call}"
        for source in SOURCES
        if source.module == CORE or source.module.startswith(f"{CORE}.")
        for call in CLOCK_OR_UNSEEDED
        if call in (ROOT / source.path).read_text(encoding="utf-8")
    ]
    assert not offending, "adapters pass times in and RNGs are seeded:\n" + "\n".join(offending)
