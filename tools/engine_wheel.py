"""Builds the durable-rules engine Liandong runs on, once per interpreter ABI, and installs it.

durable-rules 2.0.28 ships only an sdist whose C extension does not build on CPython 3.13
(docs/engine.md says why and what the patch changes). This script, run by the interpreter the
engine is for:

1. takes the pinned sdist (downloaded with pip, or from the cache) and checks its sha256;
2. applies tools/durable-rules-2.0.28.patch to a fresh copy, refusing any hunk that does not match;
3. builds a wheel with pip and keeps it in ${XDG_CACHE_HOME:-~/.cache}/liandong/wheels, one per
   ABI and patch, so later set-ups and fresh clones on the same machine do not compile again;
4. installs that wheel into the running interpreter's environment (--install) and/or copies it to
   a directory (--copy-to, the Dockerfile's builder stage).

It never touches an installed package's files: the patched source is built into its own wheel.
The wheel's path is printed on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

PROJECT = "durable-rules"
UPSTREAM_VERSION = "2.0.28"
SDIST_NAME = "durable_rules-2.0.28.tar.gz"
# The sdist on PyPI (https://pypi.org/project/durable-rules/2.0.28/#files).
SDIST_SHA256 = "053b26f5e48d312d4fa27995243f954671be6eece477f150c059c364eb4d7d61"
PATCH = Path(__file__).with_name("durable-rules-2.0.28.patch")
# The patch sets this version (a PEP 440 local label): `durable-rules==2.0.28` in pyproject.toml
# still matches it, and `pip list` shows the installed engine is the patched one.
VERSION = "2.0.28+liandong.1"


class SetupError(Exception):
    """A step of the engine build failed; the message says which and what to do."""


def log(message: str) -> None:
    print(f"engine-wheel: {message}", file=sys.stderr, flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "liandong"


def abi_key() -> str:
    """What a built extension depends on: implementation, version, ABI flags and platform."""
    return f"{sys.implementation.cache_tag}{getattr(sys, 'abiflags', '')}-{sysconfig.get_platform()}"


def wheel_dir(cache: Path) -> Path:
    """The cache folder for this interpreter's wheel; a changed patch gets a folder of its own."""
    patch_digest = sha256_of(PATCH)[:12]
    return cache / "wheels" / f"{PROJECT}-{VERSION}-{patch_digest}" / abi_key()


def run(argv: list[str], what: str) -> None:
    """Run a command quietly; on failure show its output and say what failed."""
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout)
        raise SetupError(f"{what} failed (exit {done.returncode}): {' '.join(argv)}")


def fetch_sdist(cache: Path, work: Path) -> Path:
    """The pinned sdist, checked against its sha256; downloaded once into the cache."""
    cached = cache / "sdist" / SDIST_NAME
    if cached.exists():
        if sha256_of(cached) == SDIST_SHA256:
            log(f"sdist from cache {cached}")
            return cached
        log(f"cached {cached} has the wrong sha256: downloading it again")
        cached.unlink()
    download = work / "download"
    log(f"downloading {PROJECT}=={UPSTREAM_VERSION} (sdist) with pip")
    # --no-binary for this project only: build requirements may still come as wheels.
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            PROJECT,
            "--dest",
            str(download),
            f"{PROJECT}=={UPSTREAM_VERSION}",
        ],
        "pip download",
    )
    got = download / SDIST_NAME
    if not got.exists():
        raise SetupError(
            f"pip download did not produce {SDIST_NAME} (got: {', '.join(p.name for p in download.iterdir())})"
        )
    actual = sha256_of(got)
    if actual != SDIST_SHA256:
        raise SetupError(f"{SDIST_NAME} has sha256 {actual}, expected {SDIST_SHA256}: refusing to build it")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.part")
    shutil.copyfile(got, partial)
    os.replace(partial, cached)  # atomic: a concurrent set-up sees the whole file or none
    log(f"sdist sha256 verified: {SDIST_SHA256}")
    return cached


def extract(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):  # 3.11.4 and later: refuse links and paths outside `into`
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)  # noqa: S202 - the archive's sha256 was checked
    return into / SDIST_NAME.removesuffix(".tar.gz")


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def apply_patch(patch_text: str, root: Path) -> list[str]:
    """Apply a unified diff (paths a/... b/...) to the tree at `root`, exactly: every hunk's context
    and removed lines must be found at the line the hunk names, or nothing is written. Returns the
    files changed. No fuzz and no offsets: the sdist is pinned, so the patch matches it exactly."""
    lines = patch_text.splitlines(keepends=True)
    changed: dict[str, list[str]] = {}
    i = 0
    while i < len(lines):
        if not (lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        target = lines[i + 1][4:].strip().split("\t")[0]
        if not target.startswith("b/"):
            raise SetupError(f"patch: expected a path b/..., got {target!r}")
        rel = target[2:]
        path = root / rel
        if not path.is_file():
            raise SetupError(f"patch: {rel} is not in the sdist")
        original = changed.get(rel) or path.read_text(encoding="utf-8").splitlines(keepends=True)
        result: list[str] = []
        consumed = 0  # lines of `original` already copied or replaced
        i += 2
        while i < len(lines) and lines[i].startswith("@@"):
            m = _HUNK.match(lines[i])
            if m is None:
                raise SetupError(f"patch: bad hunk header {lines[i].strip()!r}")
            old_start, old_len = int(m.group(1)), int(m.group(2) or "1")
            new_len = int(m.group(4) or "1")
            i += 1
            old: list[str] = []
            new: list[str] = []
            while i < len(lines) and (len(old) < old_len or len(new) < new_len):
                line = lines[i]
                tag, body = line[:1], line[1:]
                if line.startswith("\\"):  # "\ No newline at end of file"
                    i += 1
                    continue
                if tag in (" ", "\n"):
                    body = body if tag == " " else "\n"
                    old.append(body)
                    new.append(body)
                elif tag == "-":
                    old.append(body)
                elif tag == "+":
                    new.append(body)
                else:
                    raise SetupError(f"patch: unexpected line in a hunk of {rel}: {line!r}")
                i += 1
            if len(old) != old_len or len(new) != new_len:
                raise SetupError(f"patch: hunk at line {old_start} of {rel} is truncated")
            start = old_start - 1 if old_len else old_start
            if start < consumed or original[start : start + old_len] != old:
                raise SetupError(f"patch: hunk at line {old_start} of {rel} does not match the sdist")
            result.extend(original[consumed:start])
            result.extend(new)
            consumed = start + old_len
        result.extend(original[consumed:])
        changed[rel] = result
    if not changed:
        raise SetupError("patch: no file changes found")
    for rel, content in changed.items():
        (root / rel).write_text("".join(content), encoding="utf-8")
    return sorted(changed)


def build(cache: Path, into: Path) -> Path:
    """Download, check, patch and compile; the wheel is moved into `into` atomically."""
    with tempfile.TemporaryDirectory(prefix="liandong-engine-") as tmp:
        work = Path(tmp)
        sdist = fetch_sdist(cache, work)
        source = extract(sdist, work / "src")
        files = apply_patch(PATCH.read_text(encoding="utf-8"), source)
        log(f"applied {PATCH.name} to {', '.join(files)}")
        started = time.monotonic()
        log(f"compiling the engine for {abi_key()} (a C compiler and the Python headers are needed once)")
        out = work / "wheel"
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-cache-dir",
                "--wheel-dir",
                str(out),
                str(source),
            ],
            "building the durable-rules wheel",
        )
        built = list(out.glob("*.whl"))
        if len(built) != 1 or not built[0].name.startswith(f"durable_rules-{VERSION}-"):
            raise SetupError(f"expected one wheel durable_rules-{VERSION}-*.whl, got {[p.name for p in built]}")
        into.mkdir(parents=True, exist_ok=True)
        partial = into / f"{built[0].name}.{os.getpid()}.part"
        shutil.copyfile(built[0], partial)
        final = into / built[0].name
        os.replace(partial, final)
        log(f"compiled in {time.monotonic() - started:.1f}s; cached {final}")
        return final


def cached_wheel(into: Path) -> Path | None:
    found = [p for p in into.glob(f"durable_rules-{VERSION}-*.whl") if zipfile.is_zipfile(p)] if into.is_dir() else []
    return found[0] if len(found) == 1 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--install", action="store_true", help="install the wheel into this interpreter's environment")
    parser.add_argument("--copy-to", type=Path, metavar="DIR", help="also copy the wheel into DIR")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", help="default: ${XDG_CACHE_HOME:-~/.cache}/liandong")
    parser.add_argument("--rebuild", action="store_true", help="compile again even if a cached wheel exists")
    args = parser.parse_args(argv)
    cache = args.cache_dir or default_cache_dir()
    try:
        into = wheel_dir(cache)
        wheel = None if args.rebuild else cached_wheel(into)
        if wheel is not None:
            log(f"cached wheel, no compile: {wheel}")
        else:
            wheel = build(cache, into)
        if args.copy_to is not None:
            args.copy_to.mkdir(parents=True, exist_ok=True)
            shutil.copy2(wheel, args.copy_to / wheel.name)
        if args.install:
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--no-index",
                    "--force-reinstall",
                    str(wheel),
                ],
                "installing the durable-rules wheel",
            )
            log(f"installed durable-rules {VERSION} into {sys.prefix}")
    except SetupError as exc:
        log(f"error: {exc}")
        return 1
    print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
