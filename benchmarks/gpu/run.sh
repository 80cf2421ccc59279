#!/usr/bin/env bash
# The GPU check in one call (benchmarks/gpu/run.py): on a machine with an NVIDIA GPU, torch, transformers, peft and
# accelerate, and no network. What is missing there (TRL, datasets and its dill and multiprocess, bitsandbytes) is
# installed from wheels carried in .whl/ (git-ignored, about 45 MB), filled beforehand on a machine with the network:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#       -d .whl trl==1.16.0 datasets==5.2.0 dill multiprocess bitsandbytes==0.50.2
#
# then, from the repository root:  bash benchmarks/gpu/run.sh   (results in $OUT, else benchmarks/gpu/results/)
set -euo pipefail
cd "$(dirname "$0")/../.."
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/trl_adpo_site .whl/*.whl
    export PYTHONPATH="/tmp/trl_adpo_site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu/run.py "$@"
