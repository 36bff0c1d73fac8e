#!/usr/bin/env bash
# Builds, on this machine, what a GPU check needs, and packs it for the device machine
# (which has no crates and no network, and takes at most 64 MiB of carried files).
#
#   scripts/gpu/build.sh                      # --features cuda, release, CUDA 12.8 bindings
#   scripts/gpu/build.sh --backend wgpu       # Vulkan/Metal/DX12 through wgpu
#   scripts/gpu/build.sh --backend cpu --profile dev   # the CPU build (CI: keeps it from rotting)
#   scripts/gpu/build.sh --dry-run            # print the commands only
#
# Output (ignored by git): gpu-carry/pudding-gpu.tar.gz with bin/pudding, bin/gpu_bench,
# run.sh and BUILD.txt (backend, profile, commit, CUDA bindings). docs/backends.md says how
# to run it on the device machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

backend=cuda
profile=release
dry_run=0
out=gpu-carry
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) backend="$2"; shift 2 ;;
        --profile) profile="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$backend" in
    cuda|wgpu) features=(--features "$backend") ;;
    cpu) features=() ;;
    *) echo "build.sh: --backend takes cuda, wgpu or cpu" >&2; exit 2 ;;
esac
case "$profile" in
    release) profile_flag=(--release); profile_dir=release ;;
    dev) profile_flag=(); profile_dir=debug ;;
    *) echo "build.sh: --profile takes release or dev" >&2; exit 2 ;;
esac
# cudarc binds the CUDA version it finds (nvcc) or else the newest it knows (13.x, which
# needs a recent driver). 12.8 bindings run on drivers >= 570; override with
# CUDARC_CUDA_VERSION=13000 etc. Changing it rebuilds the cuda crates.
if [ "$backend" = cuda ]; then
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-12080}"
fi

target_dir="${CARGO_TARGET_DIR:-target}"
build=(cargo build -p pudding-cli -p pudding-examples "${profile_flag[@]}" "${features[@]}" --bin pudding --example gpu_bench)
echo "+ ${build[*]}${CUDARC_CUDA_VERSION:+ (CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION)}"
if [ "$dry_run" = 1 ]; then
    echo "+ pack $target_dir/$profile_dir/{pudding,examples/gpu_bench} + scripts/gpu/run.sh -> $out/pudding-gpu.tar.gz"
    exit 0
fi
"${build[@]}"

stage="$out/stage"
rm -rf "$stage"
mkdir -p "$stage/bin"
cp "$target_dir/$profile_dir/pudding" "$target_dir/$profile_dir/examples/gpu_bench" "$stage/bin/"
# Symbols are half of a binary; the carry limit is 64 MiB.
strip "$stage/bin/"* 2>/dev/null || true
cp scripts/gpu/run.sh "$stage/"
{
    echo "backend: $backend"
    echo "profile: $profile"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "cuda bindings: ${CUDARC_CUDA_VERSION:-none}"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
} > "$stage/BUILD.txt"
tmp="$out/.pudding-gpu.tar.gz.tmp"
tar -C "$stage" -czf "$tmp" bin run.sh BUILD.txt
mv "$tmp" "$out/pudding-gpu.tar.gz"
size=$(stat -c %s "$out/pudding-gpu.tar.gz")
echo "packed $out/pudding-gpu.tar.gz: $((size / 1024 / 1024)) MiB ($(cat "$stage/BUILD.txt" | tr '\n' ';'))"
if [ "$size" -gt $((60 * 1024 * 1024)) ]; then
    echo "build.sh: the pack is over 60 MiB; the device machine takes at most 64 MiB of carried files" >&2
    exit 1
fi
