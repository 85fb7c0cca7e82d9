"""The settings reference (docs/operations.md) lists every setting the code
reads, and nothing the code does not: a setting added without its row, or a
row left behind by a removed setting, fails here."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from engram_contract import settings as engram_settings
from engram_nats.authcallout import CalloutSettings

ROOT = Path(__file__).resolve().parents[2]
#: read from the environment directly (not settings classes): the CLI's and the
#: SDK's, and the service user's credentials (engram_nats.connection)
DIRECT = {
    "ENGRAM_API_KEY",
    "ENGRAM_URL",
    "ENGRAM_MEMORY_SPACE",
    "ENGRAM_NATS_USER",
    "ENGRAM_NATS_PASSWORD",
}


def _settings_classes() -> list[type[BaseSettings]]:
    found: list[type[BaseSettings]] = [CalloutSettings]
    found.extend(
        value
        for value in vars(engram_settings).values()
        if isinstance(value, type)
        and issubclass(value, BaseSettings)
        and value.__module__ == engram_settings.__name__
    )
    return found


def _in_code() -> set[str]:
    return {
        f"{cls.model_config.get('env_prefix', '')}{f}".upper()
        for cls in _settings_classes()
        for f in cls.model_fields
    }


def _in_tables() -> set[str]:
    rows = [
        ln for ln in (ROOT / "docs/operations.md").read_text().splitlines() if ln.startswith("|")
    ]
    return {m for row in rows for m in re.findall(r"`(ENGRAM_[A-Z0-9_]+)`", row.split("|")[1])}


def test_every_setting_has_a_row() -> None:
    missing = sorted(_in_code() - _in_tables())
    assert not missing, f"settings without a row in docs/operations.md: {missing}"


def test_every_row_is_a_setting() -> None:
    stale = sorted(_in_tables() - _in_code() - DIRECT)
    assert not stale, f"rows in docs/operations.md for settings the code does not have: {stale}"


def test_every_space_setting_has_a_row_in_the_api_reference() -> None:
    from engram_contract.messages.registry import (
        ConsolidationSettings,
        DecaySettings,
        LinkSettings,
    )

    rows = [ln for ln in (ROOT / "docs/api.md").read_text().splitlines() if ln.startswith("| `")]
    documented = {row.split("`")[1] for row in rows}
    for model in (LinkSettings, DecaySettings, ConsolidationSettings):
        missing = sorted(set(model.model_fields) - documented)
        assert not missing, f"{model.__name__} fields without a row in docs/api.md: {missing}"
