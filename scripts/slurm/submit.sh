#!/bin/bash
# Runs a pudding job (`eval` or `labels`) as a Slurm array of N shards, then merges them:
#
#   scripts/slurm/submit.sh --shards 4 --out results/eval [--wait] [SBATCH OPTIONS...] \
#       -- eval --skip ";3,7,19" --tasks paper
#
# Everything after `--` is the pudding command without --out and --shard (added here).
# Options before `--` other than --shards, --out and --wait go to both sbatch calls (e.g.
# --partition=gpu --gres=gpu:1 --cpus-per-task=8 --time=12:00:00). The merge job runs
# only if every array task succeeded (afterok); if one fails, the merge job is cancelled
# (--kill-on-invalid-dep) and, with --wait, this script exits non-zero naming the job.
# Prints the array and merge job ids. PUDDING_BIN (default `pudding`) is the binary the
# jobs run; the environment (PUDDING_HOME, ...) is exported to them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shards="" out="" wait=0 sbatch_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) shards="$2"; shift 2 ;;
    --shards=*) shards="${1#*=}"; shift ;;
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    --wait) wait=1; shift ;;
    --) shift; break ;;
    *) sbatch_opts+=("$1"); shift ;;
  esac
done
if ! [[ "$shards" =~ ^[1-9][0-9]*$ ]] || [ -z "$out" ] || [ $# -eq 0 ]; then
  echo "usage: $0 --shards N --out OUT [--wait] [SBATCH OPTIONS...] -- eval|labels ARGS..." >&2
  exit 2
fi
export PUDDING_SHARDS="$shards"
array_id="$(sbatch --parsable "${sbatch_opts[@]}" --array="0-$((shards - 1))" \
  "$here/shard.sbatch" "$@" --out "$out")"
array_id="${array_id%%;*}"
merge_id="$(sbatch --parsable "${sbatch_opts[@]}" --dependency="afterok:${array_id}" \
  --kill-on-invalid-dep=yes "$here/merge.sbatch" "$out")"
merge_id="${merge_id%%;*}"
echo "array job ${array_id} (${shards} shards), merge job ${merge_id} -> ${out}"
if [ "$wait" = 1 ]; then
  # shellcheck source=wait.sh
  . "$here/wait.sh"
  wait_for_job "$merge_id" "a shard of array ${array_id} failed (see its pudding-${array_id}_*.out logs)"
  echo "merged -> ${out}"
fi
