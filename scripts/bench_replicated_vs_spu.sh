#!/usr/bin/env bash
# One invocation: ours (replicated 3p), SPU ABY3 3p, ours (dealer 3p), workload by workload.
cd "$(dirname "$0")/.."
SPU=../shared/anchors/spu   # bash ../shared/anchors/spu/setup.sh first (/tmp/spu-venv)
for w in W1 W2a W2b W3 W7 W4; do
  echo "# load $(cut -d' ' -f1 /proc/loadavg) ours replicated $w"
  .venv/bin/mpc bench --protocol replicated --parties 3 --workload $w 2>/dev/null
  echo "# load $(cut -d' ' -f1 /proc/loadavg) spu ABY3 $w"
  (cd "$SPU" && /tmp/spu-venv/bin/python bench.py --workload $w --parties 3 --protocol ABY3 2>/dev/null | tail -1)
  echo "# load $(cut -d' ' -f1 /proc/loadavg) ours dealer $w"
  .venv/bin/mpc bench --protocol dealer --parties 3 --workload $w 2>/dev/null
done
for w in W5 W6; do
  echo "# load $(cut -d' ' -f1 /proc/loadavg) ours replicated $w"
  .venv/bin/mpc bench --protocol replicated --parties 3 --workload $w 2>/dev/null
  echo "# load $(cut -d' ' -f1 /proc/loadavg) ours dealer $w"
  .venv/bin/mpc bench --protocol dealer --parties 3 --workload $w 2>/dev/null
done
