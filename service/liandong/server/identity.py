"""Who is calling IncidentService, and what they may do.

A caller is known by a bearer token (`authorization: Bearer …`) that the identities file maps to a
name, or by the subject of its mutual-TLS client certificate. Roles: `report`, `acknowledge` (for
the units listed, or `*`), `command` (SetCommandLevel and Close). Tokens are compared in constant
time and never logged.

Without an identities file, a service that listens on loopback in plaintext (`make run`) treats
every caller as `local` with every role: only processes on this machine can reach it. Listening
anywhere else without an identities file, IncidentService refuses every call (UNAUTHENTICATED), so
exposing the port never exposes the incidents.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

REPORT = "report"
ACKNOWLEDGE = "acknowledge"
COMMAND = "command"
ROLES = (REPORT, ACKNOWLEDGE, COMMAND)
ALL_UNITS = "*"


class IdentitiesError(ValueError):
    """The identities file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Caller:
    name: str
    roles: frozenset[str]
    units: frozenset[str] = frozenset()  # the units it may acknowledge for; '*' for all

    def may(self, role: str) -> bool:
        return role in self.roles

    def may_acknowledge_for(self, unit: str) -> bool:
        return ACKNOWLEDGE in self.roles and (ALL_UNITS in self.units or unit in self.units)


LOCAL = Caller("local", frozenset(ROLES), frozenset({ALL_UNITS}))


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Identities:
    tokens: tuple[tuple[bytes, Caller], ...] = ()
    subjects: Mapping[str, Caller] | None = None
    open_local: bool = False  # no file, loopback plaintext: everyone is LOCAL

    @property
    def configured(self) -> bool:
        return bool(self.tokens or self.subjects)

    def identify(self, context: grpc.ServicerContext) -> Caller:
        """The caller, or Refused(UNAUTHENTICATED)."""
        if self.open_local:
            return LOCAL
        if not self.configured:
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                "unauthenticated",
                "IncidentService needs callers configured (--identities) on a port that is not loopback plaintext",
            )
        token = _bearer(context)
        if token is not None:
            given = token.encode("utf-8")
            found: Caller | None = None
            for known, caller in self.tokens:  # every entry compared, in constant time each
                if hmac.compare_digest(given, known):
                    found = caller
            if found is not None:
                return found
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", "the bearer token is not known")
        for subject in _subjects(context):
            by_subject = (self.subjects or {}).get(subject)
            if by_subject is not None:
                return by_subject
        raise Refused(
            grpc.StatusCode.UNAUTHENTICATED,
            "unauthenticated",
            "no identity: send 'authorization: Bearer TOKEN' or a client certificate the identities file names",
        )


def _bearer(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :]
    return None


def _subjects(context: grpc.ServicerContext) -> list[str]:
    """The client certificate's subject as gRPC reports it, and CN=<common name>."""
    auth: Mapping[str, Any] = context.auth_context() or {}
    out = [bytes(v).decode("utf-8", "replace") for v in auth.get("x509_subject", ())]
    out += ["CN=" + bytes(v).decode("utf-8", "replace") for v in auth.get("x509_common_name", ())]
    return out


def load(path: str, *, loopback_plaintext: bool, env: Mapping[str, str] | None = None) -> Identities:
    """The identities file (YAML):

    callers:
      - name: township-office
        token_env: LIANDONG_TOKEN_TOWNSHIP   # or token: "…" (at least 16 characters)
        roles: [report, acknowledge]
        units: ["*"]                          # acknowledge for these unit ids
      - name: commander-1
        subject: "CN=commander-1"             # a mutual-TLS client certificate
        roles: [report, command]
    """
    if not path:
        return Identities(open_local=loopback_plaintext)
    env = os.environ if env is None else env
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise IdentitiesError(f"{path}: {exc}") from None
    entries = data.get("callers") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise IdentitiesError(f"{path}: 'callers' must be a non-empty list")
    tokens: list[tuple[bytes, Caller]] = []
    subjects: dict[str, Caller] = {}
    for i, entry in enumerate(entries):
        where = f"{path}: callers[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise IdentitiesError(f"{where}: needs a name")
        roles = entry.get("roles") or []
        unknown = [r for r in roles if r not in ROLES]
        if not isinstance(roles, list) or unknown:
            raise IdentitiesError(f"{where}: roles are {', '.join(ROLES)} (not {', '.join(map(str, unknown))})")
        caller = Caller(str(entry["name"]), frozenset(roles), frozenset(str(u) for u in entry.get("units") or ()))
        token = entry.get("token")
        if entry.get("token_env"):
            token = env.get(str(entry["token_env"]))
            if not token:
                raise IdentitiesError(f"{where}: the variable {entry['token_env']} is not set")
        if token is not None:
            if len(str(token)) < 16:
                raise IdentitiesError(f"{where}: a token needs at least 16 characters")
            tokens.append((str(token).encode("utf-8"), caller))
        if entry.get("subject"):
            subjects[str(entry["subject"])] = caller
        if token is None and not entry.get("subject"):
            raise IdentitiesError(f"{where}: give a token, token_env or subject")
    return Identities(tuple(tokens), subjects)
