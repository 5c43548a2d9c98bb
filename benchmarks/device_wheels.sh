#!/usr/bin/env bash
# What benchmarks/device_session.sh needs on the lent GPU machine (Python 3.12, torch 2.11 with
# CUDA, transformers and no Gymnasium, nothing reachable): wheels in .whl/ and EnvPool in
# .devsite/, both ignored by git (.git/info/exclude), both carried with the call.
#
#   bash benchmarks/device_wheels.sh        # from the repo root, where pip reaches PyPI
#
# EnvPool's wheels (53 MB, and 62 MB of assets for every env family) do not fit the 64 MiB a call
# may carry, so .devsite/ holds EnvPool unpacked with only its Atari part: the other families'
# compiled modules and assets are deleted and envpool/entry.py registers Atari alone.
set -eu
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64)
get() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${PLATFORMS[@]}" -d "$1" "${@:2}"
}
rm -rf .whl .devsite
get .whl gymnasium==1.4.0 farama-notifications==0.0.6 ale-py==0.12.1 mujoco==4.0.0 \
    mujoco-core==4.0.0 glfw==2.11.0 pyopengl==3.1.10 stable-baselines3==2.9.2 dm-env==1.6 \
    dm-tree==0.1.10 optree==0.20.0 transformers==5.24.0 peft==0.21.2
tmp=$(mktemp -d)
get "$tmp" envpool==1.2.5 envpool-assets==0.3.0
mkdir .devsite
for wheel in "$tmp"/*.whl; do (cd .devsite && python3 -m zipfile -e "$wheel" .); done
rm -rf "$tmp"
cd .devsite
find envpool -name "*.so" -not -path "envpool/atari/*" -not -path "envpool/python/*" -delete
rm -rf envpool/vizdoom/bin envpool/jumanji/assets
find envpool_assets -mindepth 1 -maxdepth 1 -type d -not -name atari -exec rm -rf {} +
sed -i '/^import envpool\./{/atari/!d}' envpool/entry.py
cd ..
# pgrad runs from src/ there, uninstalled: give importlib.metadata its name and version.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
mkdir -p ".devsite/pgrad-$version.dist-info"
printf 'Metadata-Version: 2.1\nName: pgrad\nVersion: %s\n' "$version" \
    >".devsite/pgrad-$version.dist-info/METADATA"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
grep -qx '/.devsite/' .git/info/exclude || echo /.devsite/ >>.git/info/exclude
du -sh .whl .devsite
