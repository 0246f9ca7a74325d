#!/usr/bin/env bash
# The GPU check of issue 35 in one call on the lent GPU machine (BENCHMARKS.md, "GPU check"). It installs what
# the machine lacks from wheels/ (`make gpu-wheels` here; carried with the call) and epspp from this tree into
# one folder, then runs benchmarks/gpu/check.py: every stage on the device, the timings, one JSON.
#   benchmarks/gpu/check.sh [check.py's arguments]     (default: --device cuda --out $OUT/gpu_check.json)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
SITE=${EPSPP_GPU_SITE:-/tmp/epspp-gpu-site}
if ! compgen -G "wheels/*.whl" >/dev/null; then
  echo "check.sh: error: no wheels/*.whl: run 'make gpu-wheels' where pip reaches an index, and carry wheels" >&2
  exit 2
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" wheels/*.whl
# epspp itself, without its dependencies (setuptools of the machine's Python builds it); else from src/
if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$SITE" . \
  >/tmp/epspp-install.log 2>&1; then
  echo "check.sh: installing epspp from the tree failed (/tmp/epspp-install.log: $(grep -E "Error" /tmp/epspp-install.log | tail -n 1));" \
    "importing it from src/ (the JSON's versions.epspp_path)" >&2
  SITE="$SITE:$PWD/src"
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu/check.py "$@"
