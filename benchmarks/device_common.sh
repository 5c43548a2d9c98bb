# Sourced by the benchmarks/device_*.sh scripts, from the repo root, after they set W (their
# work folder): installs the carried wheels where the machine lacks Gymnasium and sets PY,
# PYTHONPATH, one thread per process and the clock that `since` reads.
#
#   WHEELS=.whl SITE=.devsite source benchmarks/device_common.sh
#
# WHEELS holds the wheels, SITE what goes on the path unpacked (EnvPool, pgrad's dist-info).
PY=${PYTHON:-python3}
if [ -d "$WHEELS" ] && ! $PY -c "import gymnasium" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD/$SITE:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
start=$(date +%s)
since() { echo "[$(($(date +%s) - start)) s] $*"; }
