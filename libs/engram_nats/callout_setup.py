"""What a nats-server with Engram's auth callout is configured with, and where
``engram dev`` keeps it: the issuer nkey that signs the users the callout
answers with, and the passwords of the two service users.

- ``engram`` (:data:`SERVICE_USER`): the gateway, the workers, the callout and
  the CLI's direct NATS commands, in the global account with every permission.
- ``engram-sys`` (:data:`SYSTEM_USER`): the callout's second connection, in the
  system account, from which it lists connections (``CONNZ``) and disconnects
  those of revoked keys (``KICK``).

Both are ``auth_users`` of the callout: nats-server checks their passwords
itself; every other connection (an agent with its API key as the token) is
decided by the callout.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from engram_nats import natsjwt

SERVICE_USER = "engram"
SYSTEM_USER = "engram-sys"
SYSTEM_ACCOUNT = "SYS"
#: seconds nats-server waits for the callout's answer before refusing a connection
AUTH_TIMEOUT_S = 2.0

_ISSUER_FILE = "issuer.nk"
_SERVICE_FILE = "service.password"
_SYSTEM_FILE = "system.password"
_CONFIG_FILE = "nats-auth.conf"
_SECRET_FILES = (_ISSUER_FILE, _SERVICE_FILE, _SYSTEM_FILE)


@dataclass(frozen=True)
class CalloutSecrets:
    """The issuer's seed and the service users' passwords."""

    issuer_seed: bytes
    service_password: str
    system_password: str

    @property
    def issuer_public(self) -> str:
        return natsjwt.public_key(natsjwt.keypair(self.issuer_seed))

    @classmethod
    def generate(cls) -> CalloutSecrets:
        return cls(natsjwt.new_account_seed(), secrets.token_urlsafe(24), secrets.token_urlsafe(24))

    @classmethod
    def read(cls, directory: Path) -> CalloutSecrets:
        """The secrets ``engram nats-auth init`` (or ``engram dev``) wrote to
        ``directory``; a clear error when they are not there."""
        try:
            values = [(directory / n).read_text().strip() for n in _SECRET_FILES]
        except OSError as exc:
            raise ValueError(
                f"cannot read the NATS auth secrets in {directory} ({exc.strerror}: "
                f"{exc.filename}); write them with `engram nats-auth init {directory}`"
            ) from None
        found = cls(values[0].encode(), values[1], values[2])
        found.issuer_public  # noqa: B018 — a corrupt seed fails here
        return found

    @classmethod
    def load_or_create(cls, directory: Path) -> CalloutSecrets:
        """The secrets kept in ``directory`` (created, mode 0700, with fresh ones
        the first time; reused on every later run)."""
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        fresh = cls.generate()
        values = (fresh.issuer_seed.decode(), fresh.service_password, fresh.system_password)
        for name, value in zip(_SECRET_FILES, values, strict=True):
            if not (directory / name).exists():
                _write_private(directory / name, value + "\n")
        return cls.read(directory)

    def server_config(self, auth_timeout: float = AUTH_TIMEOUT_S) -> str:
        """The nats-server configuration (the auth part; ports, JetStream and the
        store come from the command line, or from a configuration that
        ``include``s this one, as docker-compose's nodes do)."""
        return f"""# written by Engram: agents are authorized by the auth callout (docs/security.md)
accounts {{
  {SYSTEM_ACCOUNT} {{ users: [ {{ user: "{SYSTEM_USER}", password: "{self.system_password}" }} ] }}
}}
system_account: {SYSTEM_ACCOUNT}
authorization {{
  timeout: {auth_timeout:g}
  users: [ {{ user: "{SERVICE_USER}", password: "{self.service_password}" }} ]
  auth_callout {{
    issuer: "{self.issuer_public}"
    auth_users: [ "{SERVICE_USER}", "{SYSTEM_USER}" ]
  }}
}}
"""

    def write_config(self, path: Path, auth_timeout: float = AUTH_TIMEOUT_S) -> Path:
        _write_private(path, self.server_config(auth_timeout))
        return path

    def service_env(self) -> dict[str, str]:
        """What a gateway, worker or CLI command needs to connect as the service user."""
        return {"ENGRAM_NATS_USER": SERVICE_USER, "ENGRAM_NATS_PASSWORD": self.service_password}

    def callout_env(self, nats_url: str) -> dict[str, str]:
        """What ``engram auth-callout`` needs besides :meth:`service_env`."""
        return {
            "ENGRAM_NATS_ISSUER_SEED": self.issuer_seed.decode(),
            "ENGRAM_NATS_SYSTEM_URL": with_user(nats_url, SYSTEM_USER, self.system_password),
        }


def config_path(directory: Path) -> Path:
    return directory / _CONFIG_FILE


def init(directory: Path, auth_timeout: float = AUTH_TIMEOUT_S) -> CalloutSecrets:
    """Secrets in ``directory`` (kept if there, else generated) and the
    nats-server configuration of them next to them: what ``engram nats-auth
    init`` writes for a deployment (docker-compose mounts it into every NATS
    node and Engram process)."""
    secrets = CalloutSecrets.load_or_create(directory)
    secrets.write_config(config_path(directory), auth_timeout)
    return secrets


def with_user(urls: str, user: str, password: str) -> str:
    """``urls`` (comma-separated) with ``user:password@`` in each."""
    out = []
    for url in urls.split(","):
        parts = urlsplit(url.strip())
        host = parts.hostname or "127.0.0.1"
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        out.append(urlunsplit((parts.scheme or "nats", netloc, parts.path, "", "")))
    return ",".join(out)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
