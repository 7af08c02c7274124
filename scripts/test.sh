#!/usr/bin/env bash
# Install everything the test suite needs, then run ruff (lint + format check) and pytest.
# This is the README's test command and what CI (.ci/run) calls.
#
#   bash scripts/test.sh              # the default suite (excludes tests marked slow)
#   bash scripts/test.sh -m slow      # extra pytest arguments are passed through
#
# Environment:
#   DIGITLAB_DATA   folder with the four MNIST files (default: ../shared/mnist if present;
#                   the tests find it: benchmarks/common.py, printed in pytest's header)
#   DIGITLAB_TORCH  pip requirement for torch (default torch==2.13.0: on the project's
#                   machines that is the local CPU build; elsewhere any recent torch works)
#   SKIP_INSTALL=1  skip the system and pip installs (for a quick re-run)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    bash scripts/install-system-deps.sh
    python3 -m pip install --quiet --disable-pip-version-check "${DIGITLAB_TORCH:-torch==2.13.0}"
    python3 -m pip install --quiet --disable-pip-version-check -e ".[dev]"
fi

python3 -m ruff check src tests benchmarks scripts
python3 -m ruff format --check src tests benchmarks scripts
# Default run: everything not marked slow. -p no:cacheprovider keeps a clean clone clean.
python3 -m pytest -m "not slow" "$@"
