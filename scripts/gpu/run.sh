#!/usr/bin/env bash
# Runs the GPU check on the device machine from binaries built by scripts/gpu/build.sh
# (no build there: no crates, no network). Writes JSON, Markdown and logs to the output
# folder; the whole run stays under 10 minutes of device time.
#
#   run.sh [--out DIR] [--bin-dir DIR] [--quick] [--dry-run]
#
#   --out DIR      where results go (default: $OUT, the device tool's output folder, else ./gpu-out)
#   --bin-dir DIR  the built pudding and gpu_bench (default: bin/ next to this script)
#   --quick        tiny workloads, SmolLM2's shape only (what CI runs on the CPU build)
#   --dry-run      print the commands only
#
# Workloads (random weights of a real shape; gpu_bench, docs/backends.md):
#   SmolLM2-135M shape, f32 and bf16: dense vs 6 of 30 blocks skipped (k = 6)
#   Llama-3.1-8B shape, bf16: dense vs 7 of 32 blocks skipped (the paper's setting)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-./gpu-out}"
bin="$here/bin"
quick=0
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --bin-dir) bin="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for b in pudding gpu_bench; do
    if [ "$dry_run" = 0 ] && [ ! -x "$bin/$b" ]; then
        echo "run.sh: $bin/$b is missing: build it with scripts/gpu/build.sh" >&2
        exit 2
    fi
done
mkdir -p "$out"
summary="$out/summary.md"
failed=0

# name, time limit (s), gpu_bench arguments
if [ "$quick" = 1 ]; then
    tiny=(--prefill 64 --prompt 32 --generate 8 --batch 4 --batch-generate 4 --repeats 1)
    workloads=(
        "smollm2-f32|120|--shape smollm2 --dtype f32 --skip-count 6 ${tiny[*]}"
    )
else
    workloads=(
        "smollm2-f32|90|--shape smollm2 --dtype f32 --skip-count 6 --repeats 3"
        "smollm2-bf16|90|--shape smollm2 --dtype bf16 --skip-count 6 --repeats 3"
        "llama31-8b-bf16|300|--shape llama3.1-8b --dtype bf16 --skip-count 7 --repeats 3"
    )
fi

if [ "$dry_run" = 1 ]; then
    echo "+ $bin/pudding --device 4096 generate --prompt Hi"
    for w in "${workloads[@]}"; do
        IFS='|' read -r name limit args <<< "$w"
        echo "+ timeout $limit $bin/gpu_bench $args --out $out/$name.json"
    done
    exit 0
fi

{
    echo "# GPU check"
    echo
    echo '```'
    cat "$here/BUILD.txt" 2>/dev/null || echo "build: $bin (no BUILD.txt)"
    echo "host: $(uname -n), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    else
        echo "nvidia-smi: not found"
    fi
    echo '```'
} > "$summary"

# A device index that does not exist (or, without a GPU, the missing driver) is one line.
"$bin/pudding" --device 4096 generate --prompt Hi > "$out/device-check.log" 2>&1
echo "- \`pudding --device 4096 generate\`: exit $? — $(head -c 300 "$out/device-check.log")" >> "$summary"

for w in "${workloads[@]}"; do
    IFS='|' read -r name limit args <<< "$w"
    start=$(date +%s)
    # shellcheck disable=SC2086 # the argument list is split on purpose
    timeout "$limit" "$bin/gpu_bench" $args --out "$out/$name.json" > "$out/$name.log" 2>&1
    rc=$?
    seconds=$(( $(date +%s) - start ))
    echo "- $name: exit $rc in ${seconds} s (\`gpu_bench $args\`)" >> "$summary"
    if [ "$rc" = 0 ]; then
        { echo; echo "## $name"; echo; cat "$out/$name.md"; } >> "$summary.parts"
    else
        failed=1
        { echo; echo "## $name failed (exit $rc)"; echo; echo '```'; tail -n 20 "$out/$name.log"; echo '```'; } >> "$summary.parts"
    fi
done
[ -f "$summary.parts" ] && cat "$summary.parts" >> "$summary" && rm -f "$summary.parts"
cat "$summary"
exit "$failed"
