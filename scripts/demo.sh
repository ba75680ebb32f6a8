#!/usr/bin/env bash
# The live demo, from a fresh clone with nothing running:
#   scripts/demo.sh [demandstream demo options...]     e.g. scripts/demo.sh --duration 60
# Creates .venv if missing, installs the project with its train and dev extras (skipped when pyproject.toml
# is unchanged since the last install, by this script or by scripts/test.sh), then runs
# `demandstream demo`: local broker + Redis, a demo model (trained on first use, ~1 min), a worker,
# simulated shoppers and a live view. Ctrl-C stops it and everything it started.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
STAMP="$VENV/.demandstream-demo-installed"
TEST_STAMP="$VENV/.demandstream-installed" # scripts/test.sh installs a superset ([train,test,dev,faust])

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv demo.sh || exit 2

# Each stamp records the pyproject.toml it installed; any change to it triggers a reinstall.
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
installed() { [[ -f "$1" && "$(cat "$1")" == "$wanted" ]]; }
if ! installed "$STAMP" && ! installed "$TEST_STAMP"; then
    echo "demo.sh: installing the project into $VENV (torch pinned to the CPU wheel in [train])" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[train,dev]'
    echo "$wanted" >"$STAMP"
fi

exec "$VENV/bin/demandstream" demo "$@"
