#!/usr/bin/env bash
# Install the Debian packages the test suite needs; called by scripts/test.sh (and so .ci/run).
#
# Idempotent: packages already installed are skipped, and when nothing is missing apt is not
# touched at all (no `apt-get update`). Runs non-interactively as root (or through sudo).
# Playwright's own browser download is never used: the browser tests drive Debian's chromium.
#
#   bash scripts/install-system-deps.sh
set -euo pipefail

PACKAGES=(
    chromium            # tests/test_web_browser.py: headless browser driven by Playwright
    fonts-dejavu-core   # a font for chromium to render the page (and screenshots) with
    xvfb                # tests/test_gui.py: a real X server for the Tk window
    xdotool             # tests/test_gui.py: real pointer and key events
    postgresql          # tests/test_feedback_store.py: a throwaway PostgreSQL server on loopback
)

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: not a Debian/Ubuntu system; install these yourself:" \
        "${PACKAGES[*]} (tests that need them will say so)" >&2
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: all present (${PACKAGES[*]})"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-system-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Wait for a dpkg lock held by another apt run instead of failing at once.
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
echo "install-system-deps: installing ${missing[*]}"
"${SUDO[@]}" apt-get "${APT_OPTS[@]}" update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -qq "${missing[@]}"
