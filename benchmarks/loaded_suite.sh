#!/usr/bin/env bash
# The full test suite, RUNS times in a row (default 3), while two busy loops load the cores:
# a test whose outcome hangs on timing fails here long before it fails CI at random.
#
#     bash benchmarks/loaded_suite.sh [RUNS]
#
# Run from the repository root after the README's test command has made .venv.
set -euo pipefail
runs=${1:-3}
for _ in 1 2; do python3 -c "while True: pass" & done
trap 'kill $(jobs -p) 2>/dev/null' EXIT
for run in $(seq "$runs"); do
    start=$(date +%s)
    .venv/bin/python -m pytest -q -p no:cacheprovider | tail -n 1
    echo "loaded run $run of $runs passed in $(( $(date +%s) - start )) s"
done
