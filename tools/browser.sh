#!/usr/bin/env bash
# Installs what the browser tests (tests/web/test_browser.py) need: Debian's headless Chromium and
# a font with Chinese glyphs, so that screenshots of the pages can be read. Playwright drives this
# binary (its own `playwright install` downloads browsers from outside the package registries).
#
# Run by `make test`; idempotent and quick when both are there. It never fails the build: when
# apt-get cannot be used (not root, not Debian, no registry), it says so and the browser tests skip
# with the reason.
set -u
say() { echo "browser: $*" >&2; }

have_browser() { command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1; }
have_font() { fc-list :lang=zh 2>/dev/null | grep -q .; }

if have_browser && have_font; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "headless Chromium or a Chinese font is missing and apt-get cannot be used here: the browser tests will be skipped"
  exit 0
fi
packages="chromium-headless-shell fonts-wqy-microhei fontconfig"
install() { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends $packages >/dev/null 2>&1; }
# The package lists may be missing or stale: update them only if the first try fails.
if ! install && ! { timeout 180 apt-get update -qq >/dev/null 2>&1 && install; }; then
  say "apt-get install $packages failed: the browser tests will be skipped"
fi
exit 0
