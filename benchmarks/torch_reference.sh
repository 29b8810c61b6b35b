#!/bin/sh
# PyTorch reference for `python -m mfn_tf2.benchmark --train --preset paper`: the same
# MobileFaceNet trained the same way, in its own venv (CPU torch; never a kit dependency).
#
#   benchmarks/torch_reference.sh [torch_reference.py flags]      e.g. --steps 10 --threads 2
set -e
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv-torch"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "${PYTHON:-python3}" -m venv "$venv"
    # torch 2.13.0 resolves to the CPU wheel on this kind of host; numpy silences torch's warning.
    "$venv/bin/python" -m pip install --quiet torch==2.13.0 numpy
fi
exec "$venv/bin/python" "$here/torch_reference.py" "$@"
