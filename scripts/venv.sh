# Sourced by scripts/test.sh and scripts/demo.sh: find Python >= 3.11 and create .venv if missing.
#   ensure_venv LABEL    (LABEL prefixes the messages; returns non-zero on failure)

pick_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [[ -n "$candidate" ]] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "$1: need Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {
    local python
    [[ -x "$VENV/bin/python" ]] && return 0
    python=$(pick_python "$1") || return 1
    echo "$1: creating $VENV with $python" >&2
    "$python" -m venv "$VENV"
}
