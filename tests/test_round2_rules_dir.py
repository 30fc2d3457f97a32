"""Hostile and odd rules directories: impossible dates, huge sparse files, FIFOs, hidden directories,
and bursts of reload requests. Each must end in a located problem or a logged decision, never a
traceback, a hang or a silently missing rule set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from liandong.document import source
from liandong.document.load import load_tree
from liandong.engine.runtime import DurableRuntime
from liandong.errors import RuleDocumentInvalid
from liandong.server.app import Service, StartupError
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import request
from support.metrics import sample
from support.rules import copy_demo
from support.servers import channel, make_config, running, target

BOUND = 20.0  # seconds: every wait here is bounded
DATES = [
    pytest.param(
        "effective_from: 2024-01-01", "effective_from: 2025-13-45", "8:17", "month must be in 1..12", id="month 13"
    ),
    pytest.param(
        "effective_from: 2024-01-01",
        "effective_from: 2025-02-30",
        "8:17",
        "day is out of range for month",
        id="February 30",
    ),
    pytest.param(
        "effective_from: 2024-01-01",
        "effective_from: 2024-01-01\neffective_until: 2025-02-30",
        "9:18",
        "day is out of range",
        id="effective_until",
    ),
    pytest.param(
        "effective_from: 2024-01-01",
        "effective_from: 2024-01-01 25:00:00",
        "8:17",
        "hour must be in 0..23",
        id="hour 25",
    ),
]


def _break(rules: Path, old: str, new: str) -> Path:
    path = rules / "demo" / "2024.1.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def _located(problems: list[str], where: str, words: str) -> bool:
    return any(f"2024.1.yaml:{where}: " in p and words in p and "is not a valid date" in p for p in problems)


# -- defect 2: impossible dates -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("old", "new", "where", "words"), DATES)
def test_impossible_date_is_a_located_problem_when_loading(
    tmp_path: Path, old: str, new: str, where: str, words: str
) -> None:
    """Loading a document with an impossible date lists a problem at the date's line and column, not a bare ValueError."""
    copy_demo(tmp_path)
    _break(tmp_path, old, new)
    with pytest.raises(RuleDocumentInvalid) as caught:
        load_tree(tmp_path)
    assert _located([str(p) for p in caught.value.problems], where, words), caught.value.problems


def test_impossible_date_in_a_fixtures_file_is_located(tmp_path: Path, runtime: DurableRuntime) -> None:
    """A fixture's impossible occurred_at is a located problem of the fixtures file; the reload fails with it, it does not crash."""
    copy_demo(tmp_path)
    fixtures = tmp_path / "demo" / "2024.1.fixtures.yaml"
    with running(tmp_path, runtime, metrics_listen="") as svc, structlog.testing.capture_logs() as logs:
        with fixtures.open("a", encoding="utf-8") as out:
            out.write(
                "  - note: impossible day\n    incident: {type: demo, occurred_at: 2025-02-30, facts: {deaths: 1}}\n    want: {level: IV}\n"
            )
        outcome = svc.state.reload("admin")
    assert not outcome.ok
    assert any("2024.1.fixtures.yaml:" in e and "'2025-02-30' is not a valid date" in e for e in outcome.errors), (
        outcome.errors
    )
    assert not [e for e in logs if e["event"] == "rules_reload_crashed"]


def test_impossible_date_at_startup_reload_and_validate(tmp_path: Path, runtime: DurableRuntime) -> None:
    """With an impossible date, start-up fails naming the line, a reload keeps the old set with the located problem (no rules_reload_crashed), and `rules validate` prints it without a traceback."""
    rules = tmp_path / "rules"
    copy_demo(rules)
    with running(rules, runtime, metrics_listen="") as svc, structlog.testing.capture_logs() as logs:
        _break(rules, "effective_from: 2024-01-01", "effective_from: 2025-13-45")
        outcome = svc.state.reload("admin")
        assert not outcome.ok and _located(list(outcome.errors), "8:17", "month must be in 1..12"), outcome.errors
        assert svc.state.book is not None and svc.state.book.rulesets() == ("demo",)
    assert not [e for e in logs if e["event"] == "rules_reload_crashed"]
    svc = Service(make_config(rules), registry=CollectorRegistry(), runtime=runtime)
    with pytest.raises(StartupError) as caught:
        svc.start()
    assert "2024.1.yaml:8:17: '2025-13-45' is not a valid date" in str(caught.value)
    run = subprocess.run(
        [sys.executable, "-m", "liandong.cli", "rules", "validate", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "2024.1.yaml:8:17: '2025-13-45' is not a valid date or time: month must be in 1..12" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.splitlines()) <= 3, run.stderr


# -- defect 4: the size limit before reading ------------------------------------------------------------------------------
@pytest.fixture()
def no_whole_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fail any read of a whole file over the document limit, and record what os.read returns."""
    real_read_bytes = Path.read_bytes
    real_read = os.read
    sizes: list[int] = []

    def read_bytes(self: Path) -> bytes:
        assert self.stat().st_size <= source.MAX_DOCUMENT_BYTES, f"{self} ({self.stat().st_size} bytes) read whole"
        return real_read_bytes(self)

    def read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(os, "read", read)
    return sizes


def test_huge_sparse_document_is_refused_without_reading_it(tmp_path: Path, no_whole_reads: list[int]) -> None:
    """A 2 GiB sparse *.yaml is refused by its size before any byte of it is read."""
    copy_demo(tmp_path)
    huge = tmp_path / "demo" / "2024.2.yaml"
    with huge.open("wb") as out:
        out.truncate(2 * 1024**3)
    with pytest.raises(RuleDocumentInvalid) as caught:
        load_tree(tmp_path)
    assert [str(p) for p in caught.value.problems if "2024.2.yaml" in p.path] == [
        f"{huge}:1:1: document is {2 * 1024**3} bytes; the limit is {source.MAX_DOCUMENT_BYTES}"
    ]
    assert sum(no_whole_reads) < 3 * source.MAX_DOCUMENT_BYTES  # only the demo's own files were read


def test_a_document_that_grows_after_its_size_was_checked_is_read_only_to_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_whole_reads: list[int]
) -> None:
    """A file whose size was small when checked but is large when read is read only to the limit plus one byte, then refused."""
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (3 * source.MAX_DOCUMENT_BYTES))
    real_fstat = os.fstat

    def fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        return os.stat_result(
            (
                st.st_mode,
                st.st_ino,
                st.st_dev,
                st.st_nlink,
                st.st_uid,
                st.st_gid,
                10,
                st.st_atime,
                st.st_mtime,
                st.st_ctime,
            )
        )

    monkeypatch.setattr(os, "fstat", fstat)
    with pytest.raises(source.SourceError) as caught:
        source.read_file(big, "big.yaml")
    assert "grew while being read" in str(caught.value)
    assert sum(no_whole_reads) == source.MAX_DOCUMENT_BYTES + 1


# -- defect 5: FIFOs and other non-regular files ---------------------------------------------------------------------------
def _bounded(fn: Callable[[], object], fifo: Path) -> object:
    """fn() in a thread, at most BOUND seconds; a reader stuck on the FIFO is let go by opening its write end."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed back below
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # EOF for the blocked reader
        thread.join(BOUND)
        pytest.fail(f"blocked on the FIFO {fifo}")
    return result[0]


@pytest.mark.parametrize("name", ["2024.2.yaml", "2024.1.fixtures.yaml"])
def test_fifo_is_refused_with_a_located_problem_without_blocking(
    tmp_path: Path, runtime: DurableRuntime, name: str
) -> None:
    """A FIFO named like a document or a fixtures file is refused by name at start-up, at once; the service does not hang NOT_SERVING."""
    rules = tmp_path / "rules"
    copy_demo(rules)
    fifo = rules / "demo" / name
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    svc = Service(make_config(rules, metrics_listen=""), registry=CollectorRegistry(), runtime=runtime)
    got = _bounded(svc.start, fifo)
    assert isinstance(got, StartupError), got
    assert f"{fifo}:0:0: is not a regular file" in str(got)


def test_fifo_on_reload_fails_it_and_the_next_reload_runs(tmp_path: Path, runtime: DurableRuntime) -> None:
    """A FIFO appearing under a running service fails that reload with a located problem and never holds the reload lock: the next reload succeeds."""
    rules = tmp_path / "rules"
    copy_demo(rules)
    with running(rules, runtime, metrics_listen="") as svc:
        fifo = rules / "demo" / "2024.2.yaml"
        os.mkfifo(fifo)
        outcome = _bounded(lambda: svc.state.reload("admin"), fifo)
        assert not outcome.ok and any(f"{fifo}:0:0: is not a regular file" in e for e in outcome.errors), outcome  # type: ignore[attr-defined]
        fifo.unlink()
        assert svc.state.reload("admin").ok


# -- a hidden directory is named in the log ------------------------------------------------------------------------------------
def test_hidden_directory_is_named_in_the_load_log_and_by_validate(tmp_path: Path, runtime: DurableRuntime) -> None:
    """A rule set under a directory whose name starts with '.' is not loaded, and start-up, reloads and `rules validate` say which path was skipped."""
    rules = tmp_path / "rules"
    copy_demo(rules)
    shutil.copytree(rules / "demo", rules / ".staging" / "demo")
    with structlog.testing.capture_logs() as logs, running(rules, runtime, metrics_listen="") as svc:
        assert svc.state.book is not None and svc.state.book.rulesets() == ("demo",)
    skipped = [e for e in logs if e["event"] == "rules_not_loaded"]
    assert [(e["trigger"], e["paths"]) for e in skipped] == [("startup", [str(rules / ".staging")])]
    run = subprocess.run(
        [sys.executable, "-m", "liandong.cli", "rules", "validate", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0
    assert f"note: {rules / '.staging'} is not loaded" in run.stderr


# -- defect 6: reload requests coalesce, and an unchanged directory is not reloaded -----------------------------------------
class _HeldState:
    """Stands in for RulesState: each reload waits for `release`, and the calls are counted."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.finished = threading.Semaphore(0)

    def reload_if_changed(self, trigger: str) -> None:
        self.calls += 1
        self.started.set()
        self.release.wait(BOUND)
        self.finished.release()


def test_forty_reload_requests_during_a_reload_run_one_more_reload() -> None:
    """40 requests while a reload runs leave exactly one more reload, run after it, on the same thread."""
    from liandong.server.app import SignalReloads

    state = _HeldState()
    reloads = SignalReloads(state)  # type: ignore[arg-type]
    reloads.start()
    try:
        reloads.request()
        assert state.started.wait(BOUND)
        for _ in range(40):
            reloads.request()
        state.release.set()
        assert state.finished.acquire(timeout=BOUND) and state.finished.acquire(timeout=BOUND)
        assert not state.finished.acquire(timeout=0.2)  # nothing more was pending
        assert state.calls == 2
    finally:
        reloads.close(BOUND)


def test_requests_before_start_are_served_once_started() -> None:
    """Reload requests made before start() (SIGHUPs during the first load) give one reload once started."""
    from liandong.server.app import SignalReloads

    state = _HeldState()
    state.release.set()
    reloads = SignalReloads(state)  # type: ignore[arg-type]
    for _ in range(5):
        reloads.request()
    reloads.start()
    try:
        assert state.finished.acquire(timeout=BOUND)
        assert not state.finished.acquire(timeout=0.2)
        assert state.calls == 1
    finally:
        reloads.close(BOUND)


def test_unchanged_directory_is_not_reloaded_and_a_changed_one_is(tmp_path: Path, runtime: DurableRuntime) -> None:
    """reload_if_changed skips a directory whose documents are byte for byte as served (logged, counted `unchanged`), and reloads after any edit, even one that keeps size and times."""
    registry = CollectorRegistry()
    copy_demo(tmp_path)
    document = tmp_path / "demo" / "2024.1.yaml"
    with running(tmp_path, runtime, registry, metrics_listen="") as svc, structlog.testing.capture_logs() as logs:
        assert svc.state.reload_if_changed("signal") is None
        assert sample(registry, "liandong_reloads_total", outcome="unchanged", trigger="signal") == 1
        assert [e["event"] for e in logs if e.get("trigger") == "signal"] == ["rules_reload_skipped"]
        before = document.stat()
        text = document.read_text(encoding="utf-8")
        document.write_text(text.replace("title: 测试预案", "title: 试测预案", 1), encoding="utf-8")  # same size
        os.utime(document, ns=(before.st_atime_ns, before.st_mtime_ns))  # same modification time
        assert document.stat().st_size == before.st_size
        outcome = svc.state.reload_if_changed("signal")
        assert outcome is not None and outcome.ok
        assert sample(registry, "liandong_reloads_total", outcome="success", trigger="signal") == 1
        assert svc.state.reload("admin").ok  # an admin reload is never skipped
        with channel(target(svc)) as ch:
            assert (
                pb_grpc.ResponseServiceStub(ch).Determine(request("demo", {"deaths": 3}), timeout=10).level.code
                == "III"
            )  # type: ignore[no-untyped-call]
