"""The set-up helpers in tools/: the interpreter picker and the patched engine build."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from support.data import ROOT

TOOLS = ROOT / "tools"


def load_engine_wheel() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engine_wheel", TOOLS / "engine_wheel.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


engine_wheel = load_engine_wheel()


# -- the patch ---------------------------------------------------------------------------------------
def test_patch_changes_only_the_removed_call_and_the_version() -> None:
    """The kept patch replaces PyEval_CallObject by PyObject_CallObject five times in rules.c and sets the local version, nothing else."""
    removed: dict[str, list[str]] = {}
    added: dict[str, list[str]] = {}
    current = ""
    for line in engine_wheel.PATCH.read_text(encoding="utf-8").splitlines():
        if line.startswith("+++ b/"):
            current = line[6:]
        elif not current:  # the description above the first file
            continue
        elif line.startswith("-") and not line.startswith("---"):
            removed.setdefault(current, []).append(line[1:])
        elif line.startswith("+") and not line.startswith("+++"):
            added.setdefault(current, []).append(line[1:])
    assert sorted(removed) == sorted(added) == ["setup.py", "src/rulespy/rules.c"]
    assert len(removed["src/rulespy/rules.c"]) == 5
    assert added["src/rulespy/rules.c"] == [
        r.replace("PyEval_CallObject(", "PyObject_CallObject(") for r in removed["src/rulespy/rules.c"]
    ]
    assert all("PyEval_CallObject(callback, arglist)" in r for r in removed["src/rulespy/rules.c"])
    assert removed["setup.py"] == ["    version = '2.0.28',"]
    assert added["setup.py"] == [f"    version = '{engine_wheel.VERSION}',"]


DIFF = """header text is ignored
--- a/one.c
+++ b/one.c
@@ -2,3 +2,3 @@
 two
-three
+THREE
 four
--- a/two.c
+++ b/two.c
@@ -1,2 +1,3 @@
 alpha
+inserted
 beta
"""


def test_apply_patch_applies_every_hunk_exactly(tmp_path: Path) -> None:
    """A unified diff whose hunks match is applied to every file it names."""
    (tmp_path / "one.c").write_text("one\ntwo\nthree\nfour\nfive\n")
    (tmp_path / "two.c").write_text("alpha\nbeta\n")
    assert engine_wheel.apply_patch(DIFF, tmp_path) == ["one.c", "two.c"]
    assert (tmp_path / "one.c").read_text() == "one\ntwo\nTHREE\nfour\nfive\n"
    assert (tmp_path / "two.c").read_text() == "alpha\ninserted\nbeta\n"


def test_apply_patch_refuses_a_mismatch_and_writes_nothing(tmp_path: Path) -> None:
    """A hunk that does not match its line is refused, naming the file, and no file is changed."""
    (tmp_path / "one.c").write_text("one\ntwo\nthree\nfour\nfive\n")
    (tmp_path / "two.c").write_text("alpha\nchanged\n")
    with pytest.raises(engine_wheel.SetupError, match="hunk at line 1 of two.c does not match"):
        engine_wheel.apply_patch(DIFF, tmp_path)
    assert (tmp_path / "one.c").read_text() == "one\ntwo\nthree\nfour\nfive\n"


def test_apply_patch_refuses_a_missing_file(tmp_path: Path) -> None:
    """A patch naming a file the tree does not have is refused."""
    (tmp_path / "one.c").write_text("one\ntwo\nthree\nfour\nfive\n")
    with pytest.raises(engine_wheel.SetupError, match="two.c is not in the sdist"):
        engine_wheel.apply_patch(DIFF, tmp_path)


# -- the wheel cache ---------------------------------------------------------------------------------
def test_a_cached_wheel_is_used_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With this interpreter's wheel in the cache, the build neither downloads nor compiles, and says so."""
    folder = engine_wheel.wheel_dir(tmp_path)
    folder.mkdir(parents=True)
    wheel = folder / f"durable_rules-{engine_wheel.VERSION}-cp3-cp3-test.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("durable/__init__.py", "")

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(engine_wheel.subprocess, "run", no_subprocess)
    assert engine_wheel.main(["--cache-dir", str(tmp_path), "--copy-to", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(wheel)
    assert "cached wheel, no compile" in err
    assert (tmp_path / "out" / wheel.name).read_bytes() == wheel.read_bytes()


def test_the_cache_is_per_interpreter_and_per_patch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another ABI or a changed patch looks in another cache folder."""
    here = engine_wheel.wheel_dir(tmp_path)
    assert engine_wheel.abi_key() in here.parts and here.is_relative_to(tmp_path / "wheels")
    monkeypatch.setattr(engine_wheel.sys, "abiflags", "t", raising=False)
    assert engine_wheel.wheel_dir(tmp_path) != here
    monkeypatch.undo()
    patch = tmp_path / "other.patch"
    patch.write_text(engine_wheel.PATCH.read_text(encoding="utf-8") + "\n")
    monkeypatch.setattr(engine_wheel, "PATCH", patch)
    assert engine_wheel.wheel_dir(tmp_path) != here


def test_an_sdist_with_another_sha256_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A downloaded sdist whose sha256 is not the pinned one is never built or cached."""

    def fake_download(argv: list[str], what: str) -> None:
        dest = Path(argv[argv.index("--dest") + 1])
        dest.mkdir(parents=True)
        (dest / engine_wheel.SDIST_NAME).write_bytes(b"not the sdist")

    monkeypatch.setattr(engine_wheel, "run", fake_download)
    assert engine_wheel.main(["--cache-dir", str(tmp_path)]) == 1
    assert (
        "expected 053b26f5e48d312d4fa27995243f954671be6eece477f150c059c364eb4d7d61: refusing to build it"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "sdist").exists() and not (tmp_path / "wheels").exists()


# -- the interpreter picker --------------------------------------------------------------------------
FAKE_PYTHON = """#!/bin/sh
# Answers the two questions tools/python.sh asks an interpreter.
case "$2" in
  *executable*) echo "$0" ;;
  *) echo "{version}" ;;
esac
"""
BROKEN_SHIM = """#!/bin/sh
echo "pyenv: $(basename "$0"): command not found" >&2
exit 127
"""


@pytest.fixture()
def path_dir(tmp_path: Path) -> Path:
    """A PATH with the shell tools python.sh needs and no interpreter: each test adds its own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "ls", "grep", "sed", "sort", "basename", "cat"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    return bin_dir


def add(bin_dir: Path, name: str, text: str) -> Path:
    path = bin_dir / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def pick(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOOLS / "python.sh"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PATH": str(bin_dir)},
    )


def test_picker_takes_the_newest_supported_interpreter_that_runs(path_dir: Path) -> None:
    """python3.13 that fails (a pyenv shim of an inactive version) is skipped; 3.12 wins over 3.11 and python3."""
    add(path_dir, "python3.13", BROKEN_SHIM)
    newest = add(path_dir, "python3.12", FAKE_PYTHON.format(version="3.12"))
    add(path_dir, "python3.11", FAKE_PYTHON.format(version="3.11"))
    add(path_dir, "python3", FAKE_PYTHON.format(version="3.11"))
    done = pick(path_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(newest)


def test_picker_refuses_an_unsupported_version_naming_the_supported_ones(path_dir: Path) -> None:
    """PYTHON naming a 3.10 interpreter is refused with a message that names 3.11, 3.12 and 3.13."""
    old = add(path_dir, "python3.10", FAKE_PYTHON.format(version="3.10"))
    done = pick(path_dir, str(old))
    assert done.returncode == 2 and done.stdout == ""
    assert "is Python 3.10; Liandong supports CPython 3.11, 3.12 and 3.13" in done.stderr


def test_picker_says_what_it_needs_when_nothing_supported_is_found(path_dir: Path) -> None:
    """With only an unsupported python3 on the PATH, the picker fails and says which versions it looks for."""
    add(path_dir, "python3", FAKE_PYTHON.format(version="3.10"))
    add(path_dir, "python3.14", FAKE_PYTHON.format(version="3.14"))
    done = pick(path_dir)
    assert done.returncode == 2 and done.stdout == ""
    assert "no CPython 3.11, 3.12 or 3.13 found on the PATH" in done.stderr


def test_picker_resolves_a_named_interpreter_to_its_path(path_dir: Path) -> None:
    """PYTHON=python3.11 is checked and resolved to the interpreter's own path."""
    wanted = add(path_dir, "python3.11", FAKE_PYTHON.format(version="3.11"))
    done = pick(path_dir, "python3.11")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(wanted)


def test_picker_accepts_the_interpreter_running_this_suite() -> None:
    """The interpreter running the tests is supported: the picker returns it as it is."""
    done = subprocess.run([str(TOOLS / "python.sh"), sys.executable], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == Path(sys.executable).resolve()
