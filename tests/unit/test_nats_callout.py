"""The auth callout's pieces without a server: JWTs signed and checked by hand,
the permissions each role gets, the secrets ``engram dev`` keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engram_contract.keys import Principal, new_key
from engram_nats import natsjwt
from engram_nats.authcallout import inbox_prefix, user_permissions
from engram_nats.callout_setup import CalloutSecrets, with_user


def test_a_jwt_round_trips_and_a_changed_one_is_refused() -> None:
    kp = natsjwt.keypair(natsjwt.new_account_seed())
    token = natsjwt.encode({"sub": "U1", "nats": {"type": "user", "version": 2}}, kp)
    claims = natsjwt.decode(token)
    assert claims["sub"] == "U1" and claims["iss"] == natsjwt.public_key(kp)
    assert claims["iss"].startswith("A") and len(claims["jti"]) == 52
    header, body, sig = token.split(".")
    forged = dict(claims, sub="U2")
    other = natsjwt.b64url(json.dumps(forged).encode())
    with pytest.raises(natsjwt.JwtError, match="signature"):
        natsjwt.decode(f"{header}.{other}.{sig}")
    with pytest.raises(natsjwt.JwtError):
        natsjwt.decode("not.a.jwt")
    with pytest.raises(natsjwt.JwtError, match="header"):
        natsjwt.decode(f"{natsjwt.b64url(b'{}')}.{body}.{sig}")


def test_a_bad_seed_is_a_clear_error() -> None:
    with pytest.raises(natsjwt.JwtError, match="seed"):
        natsjwt.keypair(b"SAnotaseed")


def _subjects(perms: dict[str, list[str]]) -> list[str]:
    return list(perms["allow"])


def test_a_read_key_gets_its_spaces_queries_and_events_only() -> None:
    p = Principal("k1", "read", frozenset({"alpha", "beta"}))
    perms = user_permissions(p, "_INBOX_k1")
    pub, sub = _subjects(perms["pub"]), _subjects(perms["sub"])
    assert "spaces.alpha.q.recall" in pub and "spaces.beta.q.export" in pub
    assert not [s for s in pub if s.rsplit(".", 1)[-1] in ("remember", "forget", "link")]
    assert "spaces.alpha.q.consolidate" not in pub
    assert sorted(sub) == ["_INBOX_k1.>", "spaces.alpha.evt.>", "spaces.beta.evt.>"]
    for subject in pub:  # every subject names one of its spaces
        assert {"alpha", "beta"} & set(subject.split(".")), subject
        assert not subject.startswith(("engram.", "$KV.", "$JS.API.STREAM.")), subject
    assert perms["resp"]["max"] == 1


def test_a_write_key_adds_its_commands_and_an_admin_key_has_all_but_the_callout() -> None:
    p = Principal("k2", "write", frozenset({"alpha"}))
    pub = _subjects(user_permissions(p, "_INBOX_k2")["pub"])
    for verb in ("remember", "forget", "link"):
        assert f"spaces.alpha.{verb}" in pub
    assert "spaces.alpha.reinforce" not in pub and "spaces.alpha.consolidate" not in pub
    assert "spaces.alpha.q.consolidate" in pub
    admin = user_permissions(Principal("env-admin", "admin", frozenset()), "_INBOX")
    assert admin == {  # all but the callout's requests, which carry connecting agents' keys
        "pub": {"deny": ["$SYS.REQ.USER.AUTH"]},
        "sub": {"deny": ["$SYS.REQ.USER.AUTH"]},
    }


def test_each_key_has_its_own_inbox_prefix() -> None:
    kid, key = new_key()
    assert inbox_prefix(key) == f"_INBOX_{kid}"
    assert inbox_prefix("an operator-set admin key") == "_INBOX"  # admin: any inbox


def test_the_secrets_are_made_once_and_kept(tmp_path: Path) -> None:
    first = CalloutSecrets.load_or_create(tmp_path / "auth")
    again = CalloutSecrets.load_or_create(tmp_path / "auth")
    assert first == again
    config = first.server_config()
    assert f'issuer: "{first.issuer_public}"' in config
    assert 'auth_users: [ "engram", "engram-sys" ]' in config
    assert first.service_password in config and first.system_password in config
    assert (
        with_user("nats://h1:4222,nats://h2", "u", "p/w")
        == "nats://u:p%2Fw@h1:4222,nats://u:p%2Fw@h2"
    )
