"""Configuration: environment variables with the CRM_ prefix, read once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None  # None: the embedded PostgreSQL under data_dir
    database_name: str
    broker_url: str | None
    grpc_host: str
    grpc_port: int
    http_host: str
    http_port: int
    descriptor_path: Path
    max_request_bytes: int
    log_level: str
    segment_sync_build_limit: int
    # Forms: the gateway's public base URL the embed snippet posts to (None: the request's
    # host through the gateway, else http://CRM_HTTP_HOST:CRM_HTTP_PORT); public submission
    # rate limits a minute per client IP and per form (0 turns one off); the TCP peers whose
    # x-forwarded-for is believed (a gateway on another host: calls through the server's
    # unix socket come from this host's gateway and are always believed).
    public_base_url: str | None = None
    form_ip_rate_limit_per_minute: int = 30
    form_rate_limit_per_minute: int = 600
    trusted_proxies: tuple[str, ...] = ()
    # The MCP server's HTTP listener (`tnx-crm mcp --http`), which the gateway routes
    # /api/v1/crm/mcp to.
    mcp_host: str = "127.0.0.1"
    mcp_port: int = 8090
    # The servers the gateway balances over ("host:port" or "unix:/path"); empty: this
    # host's server, through its unix socket when it has one.
    gateway_upstreams: tuple[str, ...] = ()
    # CRM_GRPC_SOCKET=off: the server listens on TCP only.
    grpc_socket_enabled: bool = True

    @property
    def envoy_admin_socket(self) -> Path:
        """The gateway's admin interface: a socket only the stack's user may open."""
        return self.data_dir / f"envoy-admin-{self.http_port}.sock"

    @property
    def grpc_socket(self) -> Path | None:
        """A unix socket the server listens on beside its TCP port, for the gateway on the
        same host: a call that arrives there comes from the gateway (the only other local
        process with access to the data directory), so its x-forwarded-for is believed."""
        path = self.data_dir / f"grpc-{self.grpc_port}.sock"
        # sun_path holds 107 bytes; a deep data directory falls back to TCP.
        return path if self.grpc_socket_enabled and len(str(path)) < 100 else None


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def load_settings() -> Settings:
    data_dir = Path(os.environ.get("CRM_DATA_DIR", "./.tnx-crm")).expanduser().resolve()
    return Settings(
        data_dir=data_dir,
        database_url=os.environ.get("CRM_DATABASE_URL") or None,
        database_name=os.environ.get("CRM_DATABASE_NAME", "tnx_crm"),
        broker_url=os.environ.get("CRM_BROKER_URL") or None,
        grpc_host=os.environ.get("CRM_GRPC_HOST", "127.0.0.1"),
        grpc_port=_int("CRM_GRPC_PORT", 50051),
        http_host=os.environ.get("CRM_HTTP_HOST", "127.0.0.1"),
        http_port=_int("CRM_HTTP_PORT", 8080),
        descriptor_path=Path(
            os.environ.get("CRM_DESCRIPTOR_PATH", REPO_ROOT / "gateway/build/descriptor.binpb")
        ),
        max_request_bytes=_int("CRM_MAX_REQUEST_BYTES", 4 * 1024 * 1024),
        log_level=os.environ.get("CRM_LOG_LEVEL", "INFO"),
        # Rule segments of workspaces with fewer leads are built inside the request.
        segment_sync_build_limit=_int("CRM_SEGMENT_SYNC_BUILD_LIMIT", 20_000),
        public_base_url=os.environ.get("CRM_PUBLIC_BASE_URL") or None,
        form_ip_rate_limit_per_minute=_int("CRM_FORM_IP_RATE_LIMIT_PER_MINUTE", 30),
        form_rate_limit_per_minute=_int("CRM_FORM_RATE_LIMIT_PER_MINUTE", 600),
        trusted_proxies=tuple(
            part.strip()
            for part in os.environ.get("CRM_TRUSTED_PROXIES", "").split(",")
            if part.strip()
        ),
        mcp_host=os.environ.get("CRM_MCP_HOST", "127.0.0.1"),
        mcp_port=_int("CRM_MCP_PORT", 8090),
        gateway_upstreams=tuple(
            part.strip()
            for part in os.environ.get("CRM_GATEWAY_UPSTREAMS", "").split(",")
            if part.strip()
        ),
        grpc_socket_enabled=os.environ.get("CRM_GRPC_SOCKET", "on").lower() != "off",
    )
