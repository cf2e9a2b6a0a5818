#!/usr/bin/env bash
# Set up (first time) and run the demo: private training among 3 local parties + the dealer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mpc run -n 3 scripts/train_demo.py "$@"
