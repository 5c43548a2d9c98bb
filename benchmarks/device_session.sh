#!/usr/bin/env bash
# One call on a lent GPU machine (16 cores + one H100/H200), everything that needs it at once:
#
#   A. issue 18: benchmarks/rlhf_gpu.py (124M and 0.5B GPT-2 shapes, full and LoRA, bf16);
#   B. issue 19: PPO on Pong, EnvPool, learner and acting on the GPU, for SECONDS of wall time;
#   C. issue 18: real-CUDA checks (ppo/a2c/sac/rlhf trained with --device cuda, then evaluated
#      with no GPU visible; tests/test_device.py), SAC and PPO SPS beside SB3 on the GPU and CPU;
#   D. issue 20: MuJoCo PPO suite rows, one single-threaded run per core (benchmarks/suite.py).
#
# A and C share the GPU with B, so their times are upper bounds (the notes say so).
#
#   bash benchmarks/device_session.sh OUT_DIR [SECONDS] [DEVICE]
#
# From the repo root. On the device machine, Python packages it lacks travel as wheels in .whl/
# (installed to /tmp/site) and EnvPool, trimmed to its Atari part, as .devsite/; both are made
# by benchmarks/device_wheels.sh. DEVICE=cpu with a few SECONDS is the local dry run.
set -u
OUT_DIR=${1:?usage: device_session.sh OUT_DIR [SECONDS] [DEVICE]}
T=${2:-360}
DEVICE=${3:-cuda}
W=$(mktemp -d /tmp/device-session.XXXX)
mkdir -p "$OUT_DIR"
WHEELS=.whl SITE=.devsite source benchmarks/device_common.sh

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)"
    $PY -c "
import torch, numpy, gymnasium, transformers, peft
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__,
      'gymnasium', gymnasium.__version__, 'transformers', transformers.__version__,
      'peft', peft.__version__)
for name in ('envpool', 'mujoco', 'stable_baselines3', 'ale_py'):
    try:
        print(name, __import__(name).__version__)
    except Exception as e:
        print(name, 'MISSING', type(e).__name__, e)
"
} >"$W/versions.txt" 2>&1
cat "$W/versions.txt"
(nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 \
    >"$W/gpu-usage.csv" 2>/dev/null &)

# B. Pong (stopped with SIGINT: pgrad checkpoints and writes its summary).
(
    since "B start"
    timeout -s INT "$T" $PY -m pgrad train ppo --env ALE/Pong-v5 --vec envpool \
        --device "$DEVICE" --seed 0 --run-dir "$W/pong" --no-progress
    since "B done rc=$?"
) >"$W/pong.log" 2>&1 &

# A. RLHF at size.
(
    since "A start"
    if [ "$DEVICE" = cpu ]; then sizes=(--tiny --iterations 3 --sft-steps 20); else sizes=(); fi
    timeout "$T" $PY benchmarks/rlhf_gpu.py --device "$DEVICE" "${sizes[@]}" --out "$W/rlhf-gpu"
    since "A done rc=$?"
) >"$W/rlhf-gpu.log" 2>&1 &

# C. Real-device checks, then SPS beside SB3 (bounded like the rest: what is not done at T stops).
(
    since "C start"
    end=$((start + T))
    bounded() { timeout "$((end - $(date +%s) > 1 ? end - $(date +%s) : 1))" "$@"; }
    cpu_only() { bounded env CUDA_VISIBLE_DEVICES= "$@"; }
    for algo in ppo a2c; do
        bounded $PY -m pgrad train $algo --env CartPole-v1 --steps 20000 --device "$DEVICE" \
            --seed 0 --run-dir "$W/checks/$algo" --no-progress
        cpu_only $PY -m pgrad eval "$W/checks/$algo" --episodes 5 --json
        since "C $algo rc=$?"
    done
    bounded $PY -m pgrad train sac --env Pendulum-v1 --steps 3000 --device "$DEVICE" --seed 0 \
        --run-dir "$W/checks/sac" --no-progress
    cpu_only $PY -m pgrad eval "$W/checks/sac" --episodes 3 --json
    since "C sac rc=$?"
    bounded $PY -m pgrad rlhf train grpo --device "$DEVICE" --iterations 20 --seed 0 \
        --run-dir "$W/checks/rlhf" --no-progress
    cpu_only $PY -m pgrad rlhf sample "$W/checks/rlhf" --n 4
    since "C rlhf rc=$?"
    bounded $PY -m pytest -q -p no:cacheprovider tests/test_device.py 2>&1 | tail -5
    since "C tests"
    for case in ppo-HalfCheetah sac-Pendulum; do
        for where in "$DEVICE" cpu; do
            bounded $PY benchmarks/throughput.py --case $case --pairs 2 --device $where --json \
                >"$W/throughput-$case-$where.json"
            since "C throughput $case $where rc=$?"
        done
    done
) >"$W/checks.log" 2>&1 &

# D. MuJoCo PPO rows on the remaining cores.
(
    since "D start"
    $PY benchmarks/suite.py --out "$W/suite" --algos ppo --jobs "${SUITE_JOBS:-8}" \
        --envs InvertedPendulum-v5 Swimmer-v5 Walker2d-v5 InvertedDoublePendulum-v5 \
        --time-limit "$T"
    since "D done rc=$?"
) >"$W/suite.log" 2>&1 &

wait
since "all done"
tar czf "$OUT_DIR/results.tgz" --exclude='pong/checkpoints' -C "$W" .
ls -la "$OUT_DIR"
for f in pong.log rlhf-gpu.log checks.log suite.log; do
    echo "=== $f"
    tail -c 1500 "$W/$f"
done
cat "$W/rlhf-gpu/results.md" "$W/suite/suite.md" 2>/dev/null | head -40
