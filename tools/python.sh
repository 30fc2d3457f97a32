#!/bin/sh
# Prints the path of the CPython the set-up uses (Makefile). Liandong supports CPython 3.11 to 3.13.
#
#   tools/python.sh            the newest supported CPython found: python3.13, python3.12, python3.11
#                              on the PATH, then python3 and python
#   tools/python.sh NAME|PATH  that interpreter, refused unless it is a supported CPython
#
# Each candidate is run, not just looked up: a pyenv shim for a version that is not active exists on
# the PATH but fails. For such a shim (python3.X), the interpreter of that version pyenv has installed
# ($(pyenv root)/versions/3.X.*/bin) is used instead, so `PYTHON=python3.13` works without
# `pyenv shell`. Messages go to stderr; exit 2 when no supported interpreter is found.
SUPPORTED="3.13 3.12 3.11"
say() { echo "python.sh: $*" >&2; }

# The "major.minor" of a CPython that runs, or nothing.
version_of() {
  "$1" -c 'import platform, sys; v = "%d.%d" % sys.version_info[:2]; i = platform.python_implementation(); print(v if i == "CPython" else i + " " + v)' 2>/dev/null
}

# The path of interpreter $1 if it runs, trying pyenv's installed versions for pythonX.Y names.
resolve() {
  v=$(version_of "$1")
  if [ -n "$v" ]; then
    "$1" -c 'import sys; print(sys.executable)'
    return 0
  fi
  case "$1" in
    python[0-9].[0-9]|python[0-9].[0-9][0-9]) ;;
    *) return 1 ;;
  esac
  command -v pyenv >/dev/null 2>&1 || return 1
  root=$(pyenv root 2>/dev/null) || return 1
  minor=${1#python}
  # Newest patch release first; a version like 3.13.0t (free-threaded) or 3.13-dev is not matched.
  pattern="^$(echo "$minor" | sed 's/\./\\./g')\.[0-9]+\$"
  for release in $(ls "$root/versions" 2>/dev/null | grep -E "$pattern" | sort -t. -k3,3nr); do
    if [ -n "$(version_of "$root/versions/$release/bin/$1")" ]; then
      echo "$root/versions/$release/bin/$1"
      return 0
    fi
  done
  return 1
}

supported() {
  for s in $SUPPORTED; do [ "$1" = "$s" ] && return 0; done
  return 1
}

if [ -n "${1:-}" ]; then
  path=$(resolve "$1") || { say "error: '$1' does not run (not found, or a pyenv shim for a version pyenv has not installed); Liandong supports CPython 3.11, 3.12 and 3.13"; exit 2; }
  v=$(version_of "$path")
  supported "$v" || { say "error: '$1' is Python $v; Liandong supports CPython 3.11, 3.12 and 3.13: set PYTHON to one of those"; exit 2; }
  echo "$path"
  exit 0
fi

for s in $SUPPORTED; do
  if path=$(resolve "python$s"); then echo "$path"; exit 0; fi
done
for name in python3 python; do
  path=$(resolve "$name") || continue
  if supported "$(version_of "$path")"; then echo "$path"; exit 0; fi
done
say "error: no CPython 3.11, 3.12 or 3.13 found on the PATH; install one, or set PYTHON=/path/to/python3.x"
exit 2
