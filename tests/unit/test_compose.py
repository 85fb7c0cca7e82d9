"""docker-compose.yml, checked without Docker: every Engram service runs a real
``engram`` subcommand with real settings, every mounted file exists, named
volumes are declared, host ports do not clash, the NATS nodes form one cluster
(and nats-server accepts their configs), the Dockerfile copies what exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from engram_cli.devstack import find_nats_server
from engram_cli.main import build_parser, cmd_auth_callout, cmd_gateway, cmd_nats_auth, cmd_worker
from engram_contract.settings import GatewaySettings, WorkerSettings
from engram_nats.authcallout import CalloutSettings
from engram_nats.callout_setup import init

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ENGRAM = {name: svc for name, svc in SERVICES.items() if svc.get("image") == "engram:local"}
NATS = {
    name: svc for name, svc in SERVICES.items() if str(svc.get("image", "")).startswith("nats:")
}
SETTINGS: dict[str, type[Any]] = {
    "worker": WorkerSettings,
    "gateway": GatewaySettings,
    "auth-callout": CalloutSettings,
}
COMMANDS = {
    "worker": cmd_worker,
    "gateway": cmd_gateway,
    "auth-callout": cmd_auth_callout,
    "nats-auth": cmd_nats_auth,
}
#: where the nats-auth volume is mounted in the Engram containers
AUTH_DIR = "/nats-auth"


def test_the_topology_the_readme_promises() -> None:
    assert sorted(NATS) == ["nats1", "nats2", "nats3"]
    assert sorted(ENGRAM) == ["auth-callout", "gateway1", "gateway2", "nats-auth", "worker"]
    assert SERVICES["worker"]["deploy"]["replicas"] == 3
    assert SERVICES["auth-callout"]["deploy"]["replicas"] == 2
    assert {"prometheus", "grafana"} <= set(SERVICES)
    for name, svc in ENGRAM.items():
        if name == "nats-auth":
            continue
        env = svc["environment"]
        assert env["ENGRAM_SPACE_REPLICAS"] == "2" and env["ENGRAM_STREAM_REPLICAS"] == "3"
        urls = env["ENGRAM_NATS_URL"].split(",")
        assert urls == [f"nats://{n}:4222" for n in sorted(NATS)]


def test_nats_requires_keys_and_every_engram_process_has_the_service_credentials() -> None:
    """The NATS nodes start after ``engram nats-auth init`` wrote the auth setup
    into the shared volume, each includes it, and every Engram process reads its
    service password (the callout also its issuer key) from the same volume."""
    init_svc = SERVICES["nats-auth"]
    assert init_svc["command"] == ["nats-auth", "init", AUTH_DIR]
    assert init_svc["volumes"] == [f"nats-auth:{AUTH_DIR}"]
    for name, svc in NATS.items():
        assert svc["depends_on"]["nats-auth"]["condition"] == "service_completed_successfully"
        assert "nats-auth:/etc/nats/auth:ro" in svc["volumes"], name
        assert "include ./auth/nats-auth.conf" in _config(svc).read_text(), name
    for name, svc in ENGRAM.items():
        if name == "nats-auth":
            continue
        assert svc["environment"]["ENGRAM_NATS_AUTH_DIR"] == AUTH_DIR, name
        assert f"nats-auth:{AUTH_DIR}:ro" in svc["volumes"], name
    for name in ("gateway1", "gateway2"):
        assert SERVICES[name]["environment"]["ENGRAM_AUTH"] == "required"
    assert "ENGRAM_ADMIN_KEY" in SERVICES["auth-callout"]["environment"]
    # agents reach NATS on the host, and only through the callout
    assert SERVICES["nats1"]["ports"] == ["4222:4222"]
    # each gateway publishes its HTTP and its gRPC port (ENGRAM_GRPC_PORT's 7433)
    for name in ("gateway1", "gateway2"):
        inside = sorted(p.split(":")[1] for p in SERVICES[name]["ports"])
        assert inside == ["7432", "7433"], name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"mkdir {AUTH_DIR} && chown engram {AUTH_DIR}" in dockerfile


@pytest.mark.parametrize("name", sorted(ENGRAM))
def test_engram_services_run_real_subcommands_with_real_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = ENGRAM[name]
    args = build_parser().parse_args(svc["command"])
    role = svc["command"][0]
    assert args.func is COMMANDS[role]
    if role not in SETTINGS:
        return  # a one-shot command: its arguments parsed
    settings_class = SETTINGS[role]
    known = {f"ENGRAM_{field.upper()}" for field in settings_class.model_fields}
    env = svc["environment"]
    unknown = sorted(k for k in env if k.startswith("ENGRAM_") and k not in known)
    assert not unknown, f"{name}: not settings of `engram {role}`: {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = settings_class()  # every value validates
    if role == "gateway":
        assert isinstance(settings, GatewaySettings) and settings.http_host == "0.0.0.0"
    elif role == "worker":
        assert isinstance(settings, WorkerSettings) and settings.metrics_host == "0.0.0.0"
    assert str(settings.nats_auth_dir) == AUTH_DIR


def test_mounted_files_exist_and_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
        build = svc.get("build")
        if build is not None:
            assert (ROOT / build / "Dockerfile").exists()


def test_host_ports_do_not_clash() -> None:
    published = [
        str(port).split(":")[0] for svc in SERVICES.values() for port in svc.get("ports", [])
    ]
    assert len(published) == len(set(published)), published


def test_images_are_pinned_and_nats_is_new_enough() -> None:
    for name, svc in SERVICES.items():
        image = svc.get("image")
        assert image and ":" in image and not image.endswith(":latest"), name
    for svc in NATS.values():
        major, minor = (int(x) for x in svc["image"].split(":")[1].split(".")[:2])
        assert (major, minor) >= (2, 11)  # older servers ignore newer stream options


def _config(svc: dict[str, Any]) -> Path:
    (mount,) = [v for v in svc["volumes"] if v.endswith(":/etc/nats/nats.conf:ro")]
    return ROOT / mount.split(":", 1)[0]


def test_the_nats_nodes_form_one_cluster_and_their_configs_are_valid(tmp_path: Path) -> None:
    # laid out as in the containers: the config, and the volume nats-auth init wrote
    init(tmp_path / "auth")
    for name, svc in NATS.items():
        text = _config(svc).read_text()
        assert re.search(rf"^server_name: {name}$", text, re.M), name
        assert "jetstream" in text and "store_dir: /data" in text
        routes = set(re.findall(r"nats://(nats\d):6222", text))
        assert routes == set(NATS) - {name}, name
        (tmp_path / "nats.conf").write_text(text)
        checked = subprocess.run(
            [find_nats_server(), "-c", str(tmp_path / "nats.conf"), "-t"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0 and "is valid" in checked.stderr + checked.stdout, name


def test_the_dockerfile_copies_what_exists_and_runs_engram() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["engram"]' in text
