"""The soak: one million decisions through one process's durable-rules host, the known trap being its
limit of 1024 live sessions per rule set. The process starts when the tests are collected and runs
while the others do (see conftest.py); this test, the last of the run, checks what it reported."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from reliability import SOAK_DECISIONS

WAIT_AT_MOST = 900.0  # seconds, from when this test starts
RSS_GROWTH_LIMIT_KIB = 32 * 1024  # after the first checkpoint (warm caches), resident memory may not grow more


@pytest.mark.slow
def test_one_million_decisions_in_one_process(soak_run: tuple[subprocess.Popen[bytes], Path]) -> None:
    """One million decisions in one process: every answer right, no MemoryError or crash, resident memory flat after warm-up."""
    proc, out = soak_run
    try:
        exit_code = proc.wait(timeout=WAIT_AT_MOST)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    text = out.read_text(encoding="utf-8", errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert exit_code == 0, text[-3000:]
    assert "MemoryError" not in text and "Traceback" not in text
    checkpoints = [line for line in lines if "done" in line]
    summary = lines[-1]["summary"]
    assert summary["decisions"] == SOAK_DECISIONS and summary["refused"] > 0
    assert [c["done"] for c in checkpoints] == [SOAK_DECISIONS * k // 20 for k in range(21)]
    warm = checkpoints[1]["rss_kib"]
    peak = max(c["rss_kib"] for c in checkpoints[1:])
    print(
        f"\nsoak figures: {summary['decisions']} decisions + {summary['refused']} refused in {summary['seconds']}s "
        f"({summary['per_second']}/s); RSS {checkpoints[0]['rss_kib']} KiB at start, {warm} KiB after {checkpoints[1]['done']}, peak {peak} KiB, end {summary['rss_kib']} KiB"
    )
    assert peak - warm < RSS_GROWTH_LIMIT_KIB
