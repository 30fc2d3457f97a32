"""The replay client: past incidents through DetermineStream, answers in order, refusals reported."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry

from conftest import DATA, ROOT
from liandong.engine.runtime import DurableRuntime
from liandong.server import config
from liandong.server.app import Service


def _load_replay() -> ModuleType:
    spec = importlib.util.spec_from_file_location("replay", ROOT / "clients" / "python" / "replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


replay = _load_replay()


@pytest.fixture(scope="module")
def server(runtime: DurableRuntime) -> Iterator[Service]:
    cfg = config.load({"listen": "127.0.0.1:0", "metrics_listen": "", "rules_dir": str(DATA / "rules")}, env={})
    svc = Service(cfg, registry=CollectorRegistry(), runtime=runtime)
    svc.start()
    yield svc
    svc.stop(0)


def test_replay_answers_in_order(server: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every incident gets one answer line, in input order, with its level."""
    deaths = [0, 3, 10, 2, 9, 30, 1]
    lines = [json.dumps({"id": f"i{n}", "type": "demo", "facts": {"deaths": d}, "occurred_at": "2024-05-01T08:00:00+08:00"}) for n, d in enumerate(deaths)]
    source = tmp_path / "incidents.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert replay.main([str(source), "--target", f"127.0.0.1:{server.port}"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["incident_id"] for o in out] == [f"i{n}" for n in range(len(deaths))]
    assert [o["level"] for o in out] == ["IV", "III", "II", "IV", "III", "II", "IV"]
    assert all(o["version"] == "2024.1" for o in out)


def test_replay_stops_at_a_refused_incident(server: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused incident ends the replay with exit 1, after the answers before it."""
    lines = [json.dumps({"id": "ok", "type": "demo", "facts": {"deaths": 3}}), json.dumps({"id": "bad", "type": "demo", "facts": {"deaths": -1}})]
    source = tmp_path / "incidents.jsonl"
    source.write_text("\n".join(lines), encoding="utf-8")
    assert replay.main([str(source), "--target", f"127.0.0.1:{server.port}"]) == 1
    captured = capsys.readouterr()
    assert [json.loads(line)["incident_id"] for line in captured.out.splitlines()] == ["ok"]
    assert "error after 1 answers: deaths: -1 is below the minimum 0" in captured.err


def test_replay_rejects_unreadable_input(server: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line that is not an incident exits 2 naming the line."""
    source = tmp_path / "incidents.jsonl"
    source.write_text('{"id": 1, "type": "demo"}\nnot json\n', encoding="utf-8")
    assert replay.main([str(source), "--target", f"127.0.0.1:{server.port}"]) == 2
    assert "line 2: not an incident" in capsys.readouterr().err
