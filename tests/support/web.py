"""Calling the web port (pages and the /v1 JSON door) with a plain HTTP client, as curl would."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import struct_pb2

from liandong.fixtures import fixture_path, load_fixtures
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from support.data import BUNDLED, ROOT
from support.servers import LOOPBACK

SCREENSHOTS = ROOT / "test-output" / "web"  # ignored by git; for a person to look at after `make test`


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def base_url(svc: Service, scheme: str = "http") -> str:
    return f"{scheme}://{LOOPBACK}:{svc.http_port}"


def call(url: str, body: bytes | None = None, context: ssl.SSLContext | None = None, method: str = "") -> Reply:
    """One request; an HTTP error status is a Reply too (its body is the google.rpc.Status JSON)."""
    request = urllib.request.Request(url, data=body, method=method or ("POST" if body is not None else "GET"))
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:
            return Reply(reply.status, reply.headers.get("Content-Type", ""), reply.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers.get("Content-Type", ""), exc.read())


def fixture_requests(root: Path = BUNDLED) -> list[tuple[str, pb.DetermineRequest]]:
    """(note, request) for every case of every bundled fixtures file, pinned to its rule set and version."""
    out = []
    for document in sorted(root.glob("*/*.yaml")):
        if document.name.endswith(".fixtures.yaml") or not fixture_path(document).exists():
            continue
        fixtures = load_fixtures(fixture_path(document))
        for case in fixtures.cases:
            facts = struct_pb2.Struct()
            facts.update(case.incident.facts)  # type: ignore[arg-type]
            incident = pb.Incident(id=case.incident.id, type=case.incident.type, facts=facts)
            if case.incident.occurred_at is not None:
                incident.occurred_at.FromDatetime(case.incident.occurred_at)
            request = pb.DetermineRequest(incident=incident, ruleset=fixtures.ruleset, version=fixtures.version)
            out.append((f"{fixtures.ruleset} {fixtures.version}: {case.note}", request))
    return out
