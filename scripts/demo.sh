#!/usr/bin/env bash
# Set up (first time) and run the demo: 3 parties and the dealer as local processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mpc run -n 3 scripts/demo.py "$@"
