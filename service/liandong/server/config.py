"""Service configuration: one frozen value, built and validated by `load` from flags and environment.

Nothing reads the environment at import time; `main()` passes `os.environ` in, tests pass a dict.
Precedence: command-line flag, then LIANDONG_* variable, then the default.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

ENV_PREFIX = "LIANDONG_"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the flag and its variable."""


@dataclass(frozen=True)
class Config:
    listen: str = "127.0.0.1:50051"
    metrics_listen: str = "127.0.0.1:9464"  # empty: no metrics endpoint
    rules_dir: Path = Path("rules")
    log_level: str = "info"
    log_format: str = "json"
    log_facts: bool = False  # incident facts can be sensitive: off unless asked for
    admin_token: str = ""  # empty: the admin service is not served at all
    watch: bool = False  # reload when files under rules_dir change
    watch_interval: float = 2.0
    grace_seconds: float = 10.0
    max_workers: int = 16
    max_message_bytes: int = 1024 * 1024
    run_fixtures_on_reload: bool = True
    shadow: str = ""  # JSONL of recorded incidents replayed on each reload (liandong.shadow); empty: none
    workers: int = 1  # processes sharing the port (SO_REUSEPORT), each with its own engine; see server/workers.py
    reuse_port: bool = False  # set by the supervisor for its workers; not a flag
    max_concurrent_rpcs: int = 256  # calls running or queued at once; more get RESOURCE_EXHAUSTED
    max_stream_requests: int = 100_000  # requests in one DetermineStream; more end it with RESOURCE_EXHAUSTED
    tls_cert: str = ""  # PEM certificate chain for the gRPC port; empty: plaintext
    tls_key: str = ""  # its PEM private key
    tls_client_ca: str = ""  # PEM CA: clients must present a certificate it signed (mutual TLS)
    allow_plaintext: bool = False  # plaintext on an address other than loopback needs this
    http: str = ""  # the web pages and the /v1 HTTP/JSON door (server/web); empty: not served
    # Incidents (docs/incidents.md): where they are kept, who may change them, how clocks judge.
    data_dir: Path = Path("data")  # the SQLite file's directory, when --store is empty
    store: str = ""  # empty: SQLite under data_dir; or sqlite:///PATH, postgresql://USER@HOST/DB
    identities: str = ""  # YAML file: callers by bearer token or client-certificate subject, and their roles
    at_once_grace: float = 300.0  # seconds an obligation due at once may stay unacknowledged before it is overdue
    late_after: float = 5.0  # an overdue event written more than this many seconds after its time is marked late
    clock_interval: float = 0.25  # seconds between looks for due clocks (and for other replicas' events)
    clock_file: str = ""  # tests only: read "now" (ISO 8601) from this file instead of the system clock

    def redacted(self) -> dict[str, object]:
        """Settings fit for a log line: the token never appears."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["admin_token"] = "set" if self.admin_token else ""
        out["rules_dir"] = str(self.rules_dir)
        out["data_dir"] = str(self.data_dir)
        if self.store:
            from liandong.store.sql import describe  # the password never reaches a log line

            out["store"] = describe(self.store)
        return out


HELP = {
    "listen": "gRPC address host:port",
    "metrics_listen": "Prometheus metrics address host:port ('' to disable)",
    "rules_dir": "directory of rule documents",
    "log_level": f"one of {', '.join(LOG_LEVELS)}",
    "log_format": f"one of {', '.join(LOG_FORMATS)}",
    "log_facts": "include incident facts in decision logs (they can be sensitive)",
    "admin_token": "enable RulesAdminService with this bearer token",
    "watch": "reload when rule files change",
    "watch_interval": "seconds between checks for changed rule files",
    "grace_seconds": "on SIGTERM, seconds in-flight calls get to finish",
    "max_workers": "threads serving the calls that block (incidents, admin reloads, health watches); ResponseService runs on the event loop",
    "max_message_bytes": "largest request or response message",
    "run_fixtures_on_reload": "run every fixture before a reloaded set may serve",
    "shadow": "JSON-lines file of recorded incidents: on each reload, answer them under the newest versions "
    "and log and count the answers that would change",
    "workers": "processes serving the same port (SO_REUSEPORT), each with its own engine; 1 serves in this process",
    "max_concurrent_rpcs": "calls running or queued at once; more are refused with RESOURCE_EXHAUSTED",
    "max_stream_requests": "requests in one DetermineStream; the next ends the stream with RESOURCE_EXHAUSTED",
    "tls_cert": "PEM certificate chain: serve gRPC over TLS",
    "tls_key": "PEM private key of --tls-cert",
    "tls_client_ca": "PEM CA file: require client certificates it signed (mutual TLS)",
    "allow_plaintext": "allow plaintext gRPC on an address that is not loopback",
    "http": "serve the web pages and the /v1 HTTP/JSON door on this host:port, e.g. 127.0.0.1:8080 ('' = off); same TLS as gRPC",
    "data_dir": "directory of the SQLite incident store (used when --store is empty)",
    "store": "incident store URL: postgresql://USER:PASSWORD@HOST/DB for several replicas, or sqlite:///PATH",
    "identities": "YAML file of callers (bearer tokens, client-certificate subjects) and their roles; see docs/incidents.md",
    "at_once_grace": "seconds an obligation due at once may stay unacknowledged before it is overdue",
    "late_after": "seconds after its time past which an overdue event is marked late",
    "clock_interval": "seconds between looks for due clocks and for other replicas' events",
    "clock_file": "tests only: read the current time (ISO 8601) from this file",
}


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _address(field: str, value: str, allow_empty: bool = False) -> str:
    if allow_empty and value == "":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--{field.replace('_', '-')} / {env_name(field)}: '{value}' is not host:port")
    return value


def _bool(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{env_name(field)}: '{value}' is not true or false")


def _number(field: str, value: object, kind: type[int] | type[float], minimum: float) -> float:
    try:
        number = kind(str(value))
    except (TypeError, ValueError):
        raise ConfigError(f"--{field.replace('_', '-')} / {env_name(field)}: '{value}' is not a number") from None
    if number < minimum:
        raise ConfigError(f"--{field.replace('_', '-')} / {env_name(field)}: {value} is below {minimum}")
    return number


def _shorthand_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """127.1, 2130706433, 0x7f.1: IPv4 forms the system resolver reads but gRPC's does not."""
    # inet_aton also ignores text after a space, so only digits, hex and dots are handed to it.
    if not host or not all(c in "0123456789abcdefABCDEFxX." for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def canonical_address(address: str) -> str:
    """host:port with a shorthand IPv4 host written out (127.1 -> 127.0.0.1), so gRPC can bind it."""
    host, _, port = address.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return address
    except ValueError:
        short = _shorthand_ipv4(host)
        return f"{short}:{port}" if short is not None else address


def is_loopback(address: str) -> bool:
    """Whether host:port names only this machine: localhost, 127.0.0.0/8 in any form the system
    resolver reads (127.1, 2130706433), ::1, and IPv4-mapped ::ffff:127.x.y.z."""
    host = address.rpartition(":")[0].strip("[]")
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        short = _shorthand_ipv4(host)
        if short is None:
            return False
        ip = short
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def load(flags: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The configuration from flags (None values are unset) over LIANDONG_* variables over defaults."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = env or {}
    raw: dict[str, object] = {}
    for f in fields(Config):
        if f.name in flags:
            raw[f.name] = flags[f.name]
        elif env_name(f.name) in env:
            raw[f.name] = env[env_name(f.name)]
    base = Config()
    listen = canonical_address(_address("listen", str(raw.get("listen", base.listen))))
    metrics = _address("metrics_listen", str(raw.get("metrics_listen", base.metrics_listen)), allow_empty=True)
    level = str(raw.get("log_level", base.log_level)).lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"--log-level / {env_name('log_level')}: '{level}' is not one of {', '.join(LOG_LEVELS)}")
    fmt = str(raw.get("log_format", base.log_format)).lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"--log-format / {env_name('log_format')}: '{fmt}' is not one of {', '.join(LOG_FORMATS)}")
    token = str(raw.get("admin_token", base.admin_token))
    if token and len(token) < 16:
        raise ConfigError(f"--admin-token / {env_name('admin_token')}: use at least 16 characters")
    tls_cert, tls_key, tls_client_ca = (str(raw.get(name, "")) for name in ("tls_cert", "tls_key", "tls_client_ca"))
    allow_plaintext = _bool("allow_plaintext", raw.get("allow_plaintext", base.allow_plaintext))
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError(f"--tls-cert / {env_name('tls_cert')} and --tls-key / {env_name('tls_key')} go together")
    if tls_client_ca and not tls_cert:
        raise ConfigError(f"--tls-client-ca / {env_name('tls_client_ca')} needs --tls-cert and --tls-key")
    if not tls_cert and not allow_plaintext and not is_loopback(listen):
        raise ConfigError(
            f"--listen / {env_name('listen')}: '{listen}' is not a loopback address; serve it with --tls-cert and --tls-key, or allow plaintext explicitly with --allow-plaintext / {env_name('allow_plaintext')}"
        )
    http = _address("http", str(raw.get("http", base.http)), allow_empty=True)
    if http:
        http = canonical_address(http)
        if not tls_cert and not allow_plaintext and not is_loopback(http):
            raise ConfigError(
                f"--http / {env_name('http')}: '{http}' is not a loopback address; serve it with --tls-cert and --tls-key, or allow plaintext explicitly with --allow-plaintext / {env_name('allow_plaintext')}"
            )
    return Config(
        listen=listen,
        metrics_listen=metrics,
        rules_dir=Path(str(raw.get("rules_dir", base.rules_dir))),
        log_level=level,
        log_format=fmt,
        log_facts=_bool("log_facts", raw.get("log_facts", base.log_facts)),
        admin_token=token,
        watch=_bool("watch", raw.get("watch", base.watch)),
        watch_interval=float(_number("watch_interval", raw.get("watch_interval", base.watch_interval), float, 0.1)),
        grace_seconds=float(_number("grace_seconds", raw.get("grace_seconds", base.grace_seconds), float, 0)),
        max_workers=int(_number("max_workers", raw.get("max_workers", base.max_workers), int, 1)),
        max_message_bytes=int(
            _number("max_message_bytes", raw.get("max_message_bytes", base.max_message_bytes), int, 1024)
        ),
        run_fixtures_on_reload=_bool(
            "run_fixtures_on_reload", raw.get("run_fixtures_on_reload", base.run_fixtures_on_reload)
        ),
        shadow=str(raw.get("shadow", base.shadow)),
        workers=int(_number("workers", raw.get("workers", base.workers), int, 1)),
        max_concurrent_rpcs=int(
            _number("max_concurrent_rpcs", raw.get("max_concurrent_rpcs", base.max_concurrent_rpcs), int, 1)
        ),
        max_stream_requests=int(
            _number("max_stream_requests", raw.get("max_stream_requests", base.max_stream_requests), int, 1)
        ),
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        allow_plaintext=allow_plaintext,
        http=http,
        data_dir=Path(str(raw.get("data_dir", base.data_dir))),
        store=_store(str(raw.get("store", base.store))),
        identities=str(raw.get("identities", base.identities)),
        at_once_grace=float(_number("at_once_grace", raw.get("at_once_grace", base.at_once_grace), float, 0)),
        late_after=float(_number("late_after", raw.get("late_after", base.late_after), float, 0)),
        clock_interval=float(_number("clock_interval", raw.get("clock_interval", base.clock_interval), float, 0.01)),
        clock_file=str(raw.get("clock_file", base.clock_file)),
    )


def _store(value: str) -> str:
    if value and not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise ConfigError(
            f"--store / {env_name('store')}: use postgresql://USER:PASSWORD@HOST/DB or sqlite:///PATH (empty: SQLite under --data-dir)"
        )
    return value
