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
from engram_cli.main import build_parser, cmd_gateway, cmd_worker
from engram_contract.settings import GatewaySettings, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ENGRAM = {name: svc for name, svc in SERVICES.items() if svc.get("image") == "engram:local"}
NATS = {
    name: svc for name, svc in SERVICES.items() if str(svc.get("image", "")).startswith("nats:")
}
SETTINGS = {"worker": WorkerSettings, "gateway": GatewaySettings}


def test_the_topology_the_readme_promises() -> None:
    assert sorted(NATS) == ["nats1", "nats2", "nats3"]
    assert sorted(ENGRAM) == ["gateway1", "gateway2", "worker"]
    assert SERVICES["worker"]["deploy"]["replicas"] == 3
    assert {"prometheus", "grafana"} <= set(SERVICES)
    for svc in ENGRAM.values():
        env = svc["environment"]
        assert env["ENGRAM_SPACE_REPLICAS"] == "2" and env["ENGRAM_STREAM_REPLICAS"] == "3"
        urls = env["ENGRAM_NATS_URL"].split(",")
        assert urls == [f"nats://{n}:4222" for n in sorted(NATS)]


@pytest.mark.parametrize("name", sorted(ENGRAM))
def test_engram_services_run_real_subcommands_with_real_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = ENGRAM[name]
    args = build_parser().parse_args(svc["command"])
    role = svc["command"][0]
    assert args.func is {"worker": cmd_worker, "gateway": cmd_gateway}[role]
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
    else:
        assert isinstance(settings, WorkerSettings) and settings.metrics_host == "0.0.0.0"


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


def test_the_nats_nodes_form_one_cluster_and_their_configs_are_valid() -> None:
    for name, svc in NATS.items():
        text = _config(svc).read_text()
        assert re.search(rf"^server_name: {name}$", text, re.M), name
        assert "jetstream" in text and "store_dir: /data" in text
        routes = set(re.findall(r"nats://(nats\d):6222", text))
        assert routes == set(NATS) - {name}, name
        checked = subprocess.run(
            [find_nats_server(), "-c", str(_config(svc)), "-t"],
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
