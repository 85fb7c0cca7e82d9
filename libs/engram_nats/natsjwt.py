"""NATS JWTs by hand: base64url JSON signed with an ed25519 nkey.

What nats-server's auth callout sends and expects (the shapes of
``github.com/nats-io/jwt/v2``): a token is ``header.claims.signature``, each part
base64url without padding; the header is ``{"typ": "JWT", "alg": "ed25519-nkey"}``;
the signature is the issuer's ed25519 signature of ``header.claims``; ``jti`` is
the base32 (no padding) SHA-512/256 of the claims with an empty ``jti``, as the Go
library computes it (the server does not check it, but it names the token).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any

import nacl.signing
import nkeys  # type: ignore[import-untyped]

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
#: the ``version`` of the claims' ``nats`` part (jwt v2)
CLAIMS_VERSION = 2


class JwtError(ValueError):
    """A token that is not a well-formed, correctly signed NATS JWT."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def new_seed(prefix: int) -> bytes:
    """A fresh nkey seed of the given role (``nkeys.PREFIX_BYTE_ACCOUNT``…)."""
    return bytes(nkeys.encode_seed(os.urandom(32), prefix))


def new_account_seed() -> bytes:
    return new_seed(nkeys.PREFIX_BYTE_ACCOUNT)


def keypair(seed: bytes) -> Any:
    """The nkeys key pair of a seed (raises :class:`JwtError` for a bad seed)."""
    try:
        return nkeys.from_seed(bytearray(seed.strip()))
    except Exception as exc:  # nkeys raises its own errors and binascii's
        raise JwtError(f"not an nkey seed: {exc!r}") from None


def public_key(kp: Any) -> str:
    return bytes(kp.public_key).decode()


def _jti(claims: dict[str, Any]) -> str:
    body = {k: v for k, v in claims.items() if k not in ("jti", "nats")}
    digest = hashlib.new("sha512_256", _json(body)).digest()
    return base64.b32encode(digest).rstrip(b"=").decode()


def encode(claims: dict[str, Any], kp: Any) -> str:
    """Sign ``claims`` (their ``iss``, ``iat`` and ``jti`` are filled in) with ``kp``."""
    claims = {**claims, "iss": public_key(kp), "iat": int(time.time())}
    claims["jti"] = _jti(claims)
    signing_input = f"{b64url(_json(HEADER))}.{b64url(_json(claims))}"
    signature = kp.sign(signing_input.encode())
    return f"{signing_input}.{b64url(bytes(signature))}"


def decode(token: str, *, verify: bool = True) -> dict[str, Any]:
    """The claims of ``token``; with ``verify`` its signature is checked against
    its own issuer (``iss``), which proves it was not altered since it was signed."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError("a JWT has three parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwtError(f"not a JWT: {exc}") from None
    if not isinstance(header, dict) or str(header.get("alg", "")).lower() != HEADER["alg"]:
        raise JwtError(f"unexpected JWT header {header!r}")
    if not isinstance(claims, dict):
        raise JwtError("the claims are not an object")
    if verify:
        issuer = claims.get("iss")
        if not isinstance(issuer, str):
            raise JwtError("the JWT names no issuer")
        try:
            _verify_key(issuer).verify(f"{parts[0]}.{parts[1]}".encode(), signature)
        except Exception as exc:
            raise JwtError(f"bad signature: {exc!r}") from None
    return claims


def _verify_key(public: str) -> Any:
    """The ed25519 key of an nkey public key (base32: role byte, 32 bytes, CRC16)."""
    raw = base64.b32decode(public + "=" * (-len(public) % 8))
    if len(raw) != 35 or bytes(nkeys.crc16_checksum(raw[:33])) != raw[33:]:
        raise JwtError(f"not an nkey public key: {public!r}")
    return nacl.signing.VerifyKey(raw[1:33])
