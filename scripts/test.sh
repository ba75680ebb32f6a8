#!/usr/bin/env bash
# The project's test command, from a fresh clone on a new machine:
#   scripts/test.sh [pytest args...]
# Creates .venv if missing, installs the project with its train+test+dev+faust extras (skipped when
# pyproject.toml is unchanged since the last install), then runs ruff, mypy and pytest.
# Every check runs even if an earlier one fails; the exit status is non-zero if any failed.
# Needs no Docker: the tests start their own tansu broker and redis-server.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
STAMP="$VENV/.demandstream-installed"

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv test.sh || exit 2

# The stamp records the pyproject.toml it installed; any change to it triggers a reinstall, and so
# does a missing extra (a .venv stamped before the faust extra joined the list).
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$wanted" ]] \
    || ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('faust') is None)" 2>/dev/null; then
    echo "test.sh: installing the project into $VENV (torch pinned to the CPU wheel in [train])"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[train,test,dev,faust]' || exit 2
    echo "$wanted" >"$STAMP"
fi

# The insights dashboard test drives a real headless Chromium (Debian's packages), with CJK fonts
# so that the Chinese it renders is glyphs, not boxes.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 \
    || ! fc-list 2>/dev/null | grep -q "Noto Sans CJK"; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing Debian's chromium + chromium-driver + fonts-noto-cjk for the dashboard test"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
            fonts-noto-cjk; } >/dev/null || exit 2
    else
        echo "test.sh: need chromium, chromedriver and CJK fonts: apt-get install chromium chromium-driver fonts-noto-cjk (as root)" >&2
        exit 2
    fi
fi

failed=()
run() {
    local name=$1
    shift
    echo "test.sh: $name"
    "$@" || failed+=("$name")
}
run "ruff" "$VENV/bin/ruff" check .
run "mypy" "$VENV/bin/mypy"
run "pytest" "$VENV/bin/pytest" "$@"

if ((${#failed[@]})); then
    echo "test.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "test.sh: all checks passed"
