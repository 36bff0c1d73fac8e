#!/bin/bash
# Runs `pudding reproduce` on a Slurm cluster as chained arrays of its stages:
#
#   pools (array) + baselines (array) -> merge -> labels (array) + eval (array) -> merge
#     -> routers -> `pudding reproduce` (finds every output in place, writes the report)
#
#   scripts/slurm/reproduce.sh --shards 8 [--wait] [SBATCH OPTIONS...] -- \
#       --model smollm2-135m-instruct --out results/smollm2 -k 3,6 --jobs 1
#
# Everything after `--` is the `pudding reproduce` arguments (without --stage and --shard,
# which this script adds); every job gets the same ones. Each job starts only if the jobs
# before it succeeded (--dependency=afterok); if one fails, the jobs after it are cancelled
# (--kill-on-invalid-dep) and, with --wait, this script exits non-zero. Options before `--`
# other than --shards and --wait go to every sbatch call (e.g. --partition, --time,
# --gres=gpu:1 for a GPU build). A stage skips the outputs that exist, so resubmitting
# after a failure resumes. PUDDING_BIN (default `pudding`) is the binary the jobs run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shards="" wait=0 sbatch_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) shards="$2"; shift 2 ;;
    --shards=*) shards="${1#*=}"; shift ;;
    --wait) wait=1; shift ;;
    --) shift; break ;;
    *) sbatch_opts+=("$1"); shift ;;
  esac
done
if ! [[ "$shards" =~ ^[1-9][0-9]*$ ]] || [ $# -eq 0 ]; then
  echo "usage: $0 --shards N [--wait] [SBATCH OPTIONS...] -- REPRODUCE ARGS..." >&2
  exit 2
fi
export PUDDING_SHARDS="$shards" PUDDING_SHARD_FLAG=--shard
# submit DEPENDENCY SCRIPT ARGS...: submits and prints the job id.
submit() {
  local dep="$1"; shift
  local deps=()
  [ -n "$dep" ] && deps=(--dependency="afterok:${dep}" --kill-on-invalid-dep=yes)
  local id
  id="$(sbatch --parsable "${sbatch_opts[@]}" "${deps[@]}" "$@")"
  echo "${id%%;*}"
}
array() { # array DEPENDENCY STAGE
  submit "$1" --array="0-$((shards - 1))" "$here/shard.sbatch" reproduce "${args[@]}" --stage "$2"
}
single() { # single DEPENDENCY [STAGE]
  local stage=()
  [ $# -gt 1 ] && stage=(--stage "$2")
  submit "$1" "$here/run.sbatch" reproduce "${args[@]}" "${stage[@]}"
}
args=("$@")
pools="$(array "" pools)"
baselines="$(array "" baselines)"
merge1="$(single "${pools}:${baselines}" merge)"
labels="$(array "$merge1" labels)"
eval="$(array "$merge1" eval)"
merge2="$(single "${labels}:${eval}" merge)"
routers="$(single "$merge2" routers)"
report="$(single "$routers")"
echo "pools ${pools}, baselines ${baselines}, merge ${merge1}, labels ${labels}, eval ${eval}, merge ${merge2}, routers ${routers}, report ${report}"
if [ "$wait" = 1 ]; then
  # shellcheck source=wait.sh
  . "$here/wait.sh"
  wait_for_job "$report" "a stage failed (see the pudding-*.out logs)"
  echo "reproduce complete"
fi
