#!/usr/bin/env bash
# Debian's Chromium for the report's headless-browser test; that test skips, saying why, where
# no browser can be installed. Nothing happens when a Chromium is already on the PATH.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "install_browser: not root and no password-less sudo: the browser test will skip" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install_browser: no apt-get (not Debian/Ubuntu): the browser test will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null \
  || { "${as_root[@]}" apt-get update -q >/dev/null \
       && "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null; } \
  || echo "install_browser: apt-get could not install chromium: the browser test will skip" >&2
