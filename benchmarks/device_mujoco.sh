#!/usr/bin/env bash
# Issue 20 on a lent GPU machine (16 cores + one H100/H200): PPO candidates for the MuJoCo rows
# that fall short (Ant-v5, InvertedDoublePendulum-v5), one single-threaded run per core, and
# SAC on CarRacing-v3 (pixels) on the GPU beside them.
#
#   bash benchmarks/device_mujoco.sh OUT_DIR [SECONDS] [DEVICE]
#
# The candidate is Walker2d-v5's shipped entry ("W": pgrad's generic PPO settings with
# normalize_obs, normalize_reward and anneal_lr), set key by key over each env's entry (keys an
# entry has beyond those stay). Seeds 0-2 screen it, 100-102 measure it; HalfCheetah and Hopper
# get a short screen (seeds 0, 1 and 0). Every run gets SIGINT at SECONDS (pgrad checkpoints it)
# and can be finished elsewhere with `pgrad train --resume RUN`. The results come back as
# OUT_DIR/results.tgz.aa, .ab, ... (a call returns files of at most 16 MiB; these are ~20 MB in
# all): `cat results.tgz.* | tar xzf -`.
# From the repo root. The wheels the machine lacks travel in .whlm/ (Gymnasium, MuJoCo, Box2D and
# pygame-ce: benchmarks/device_wheels.sh's, and `pip download box2d==2.3.10 pygame-ce==2.5.8`
# likewise) and pgrad's dist-info in .devmeta/ (both in .git/info/exclude, named in `carry`).
# DEVICE=cpu with a few SECONDS is the local dry run.
set -u
OUT_DIR=${1:?usage: device_mujoco.sh OUT_DIR [SECONDS] [DEVICE]}
T=${2:-470}
DEVICE=${3:-cuda}
W=$(mktemp -d /tmp/device-mujoco.XXXX)
mkdir -p "$OUT_DIR"
WHEELS=.whlm SITE=.devmeta source benchmarks/device_common.sh
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)|Thread"
    $PY -c "import torch, gymnasium, mujoco; print('torch', torch.__version__, torch.cuda.is_available(),
'gymnasium', gymnasium.__version__, 'mujoco', mujoco.__version__)"
} >"$W/versions.txt" 2>&1
cat "$W/versions.txt"

CANDIDATE=(--set n_envs=8 --set n_steps=256 --set batch_size=256 --set n_epochs=10
           --set learning_rate=0.0003 --set anneal_lr=true --set gamma=0.99 --set gae_lambda=0.95
           --set clip_range=0.2 --set normalize_obs=true --set normalize_reward=true)
ppo() {  # ENV SEED
    local dir="$W/runs/$1-W-s$2"
    timeout -s INT "$T" $PY -m pgrad train ppo --env "$1" --seed "$2" "${CANDIDATE[@]}" \
        --set threads=1 --run-dir "$dir" --no-progress >"$dir.log" 2>&1
    since "$1 seed $2 rc=$?" >>"$W/ppo.log"
}
mkdir -p "$W/runs"
for seed in 0 1 2 100 101 102; do ppo Ant-v5 $seed & done
for seed in 0 1 2 100 101 102; do ppo InvertedDoublePendulum-v5 $seed & done
ppo HalfCheetah-v5 0 & ppo HalfCheetah-v5 1 & ppo Hopper-v5 0 &

# The GPU: SAC on pixels until the time is up (its 2 GB replay buffer does not come back).
(
    since "gpu start"
    timeout -s INT "$T" $PY -m pgrad train sac --env CarRacing-v3 \
        --device "$DEVICE" --seed 100 --set log_every=250 --set checkpoint_every=10000000 \
        --run-dir "$W/sac-carracing" --no-progress
    since "sac done rc=$?"
) >"$W/gpu.log" 2>&1 &
(nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 \
    >"$W/gpu-usage.csv" 2>/dev/null &)

wait
since "all done"
tar czf - --exclude='sac-carracing/checkpoints' -C "$W" . | split -b 15000000 - "$OUT_DIR/results.tgz."
ls -la "$OUT_DIR"
cat "$W/ppo.log"
tail -c 2500 "$W/gpu.log"
for f in "$W"/runs/*.log; do echo "== $f"; tail -n 2 "$f"; done
