"""The replay client: past incidents through DetermineStream, answers in order, refusals reported."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from support.data import DATA, ROOT
from support.servers import running


def _load_replay() -> ModuleType:
    spec = importlib.util.spec_from_file_location("replay", ROOT / "clients" / "python" / "replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


replay = _load_replay()


@pytest.fixture(scope="module")
def server(runtime: DurableRuntime) -> Iterator[Service]:
    """A service over tests/data/rules (the demo rule set), which the replayed incidents are written for."""
    with running(DATA / "rules", runtime) as svc:
        yield svc


def test_replay_answers_in_order(server: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every incident gets one answer line, in input order, with its level."""
    deaths = [0, 3, 10, 2, 9, 30, 1]
    lines = [
        json.dumps({"id": f"i{n}", "type": "demo", "facts": {"deaths": d}, "occurred_at": "2024-05-01T08:00:00+08:00"})
        for n, d in enumerate(deaths)
    ]
    source = tmp_path / "incidents.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert replay.main([str(source), "--target", f"127.0.0.1:{server.port}"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["incident_id"] for o in out] == [f"i{n}" for n in range(len(deaths))]
    assert [o["level"] for o in out] == ["IV", "III", "II", "IV", "III", "II", "IV"]
    assert all(o["version"] == "2024.1" for o in out)


def test_replay_stops_at_a_refused_incident(
    server: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused incident ends the replay with exit 1, after the answers before it."""
    lines = [
        json.dumps({"id": "ok", "type": "demo", "facts": {"deaths": 3}}),
        json.dumps({"id": "bad", "type": "demo", "facts": {"deaths": -1}}),
    ]
    source = tmp_path / "incidents.jsonl"
    source.write_text("\n".join(lines), encoding="utf-8")
    assert replay.main([str(source), "--target", f"127.0.0.1:{server.port}"]) == 1
    captured = capsys.readouterr()
    assert [json.loads(line)["incident_id"] for line in captured.out.splitlines()] == ["ok"]
    assert "error after 1 answers: deaths: -1 is below the minimum 0" in captured.err


def test_replay_in_batches_answers_in_order(
    server: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --batch-size 3, seven incidents (batches of 3, 3 and 1) get one answer line each, in input order."""
    deaths = [0, 3, 10, 2, 9, 30, 1]
    source = tmp_path / "incidents.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"i{n}", "type": "demo", "facts": {"deaths": d}}) + "\n" for n, d in enumerate(deaths)
        ),
        encoding="utf-8",
    )
    assert replay.main([str(source), "--target", f"127.0.0.1:{server.port}", "--batch-size", "3"]) == 0
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert [(o["incident_id"], o["level"]) for o in out] == [
        (f"i{n}", lv) for n, lv in enumerate(["IV", "III", "II", "IV", "III", "II", "IV"])
    ]
    assert "7 incidents answered" in captured.err


def test_replay_stops_at_a_refused_incident_in_a_later_batch(
    server: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused incident in the second batch ends the replay with exit 1, after the answers to every incident before it."""
    facts = [{"deaths": 1}, {"deaths": 3}, {"deaths": 10}, {"deaths": -1}, {"deaths": 2}]
    source = tmp_path / "incidents.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"i{n}", "type": "demo", "facts": f}) + "\n" for n, f in enumerate(facts)),
        encoding="utf-8",
    )
    assert replay.main([str(source), "--target", f"127.0.0.1:{server.port}", "--batch-size", "2"]) == 1
    captured = capsys.readouterr()
    assert [json.loads(line)["incident_id"] for line in captured.out.splitlines()] == ["i0", "i1", "i2"]
    assert "error after 3 answers: deaths: -1 is below the minimum 0" in captured.err


@pytest.mark.parametrize("size", ["0", "1001", "ten"])
def test_replay_rejects_a_batch_size_out_of_range(
    size: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --batch-size that is not a whole number from 1 to 1000 is a usage error (exit 2) naming the limit, before anything is sent."""
    source = tmp_path / "incidents.jsonl"
    source.write_text(json.dumps({"id": "i0", "type": "demo", "facts": {}}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as caught:
        replay.main([str(source), "--target", "127.0.0.1:1", "--batch-size", size])
    assert caught.value.code == 2
    assert "from 1 to 1000" in capsys.readouterr().err


def test_replay_rejects_unreadable_input(server: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line that is not an incident exits 2 naming the line."""
    source = tmp_path / "incidents.jsonl"
    source.write_text('{"id": 1, "type": "demo"}\nnot json\n', encoding="utf-8")
    assert replay.main([str(source), "--target", f"127.0.0.1:{server.port}"]) == 2
    assert "line 2: not an incident" in capsys.readouterr().err
