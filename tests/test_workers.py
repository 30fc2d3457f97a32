"""`liandong serve --workers N` refuses what cannot work. (Two workers sharing a port, a killed one replaced,
the supervisor's metrics and SIGTERM: reliability/test_workers.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.data import ROOT

LIANDONG = str(Path(sys.executable).with_name("liandong"))
DEADLINE = 60.0  # seconds for any one wait below


def test_workers_need_a_fixed_port() -> None:
    """--workers with port 0 is refused: every worker would get a different port."""
    result = subprocess.run(
        [
            LIANDONG,
            "serve",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "",
            "--rules-dir",
            str(ROOT / "rules"),
        ],
        capture_output=True,
        timeout=DEADLINE,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert b"fixed port" in result.stderr
