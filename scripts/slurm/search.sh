#!/bin/bash
# Spreads one greedy search (`pudding candidates` with one task and one loss, or
# `pudding baseline --method sleb`) over N workers: one Slurm array per phase, each task
# scoring its share of the phase's trials (`--step-shard I/N`), then a merge job that adds
# the phase to the search's checkpoint, all chained with --dependency=afterok; a last job
# runs the command without sharding, which finds every phase in the checkpoint and writes
# the output.
#
#   scripts/slurm/search.sh --shards 4 --rounds 6 \
#       --checkpoint results/ckpt/arc_easy-tl-k6.json [--wait] [SBATCH OPTIONS...] -- \
#       candidates --tasks arc_easy --losses tl -k 6 --checkpoints results/ckpt \
#       --out results/pool-arc_easy-tl.json
#
# --rounds is the number of phases left: k for a new search, fewer when the checkpoint
# already holds some. --checkpoint is the search's checkpoint: `<--checkpoints>/<task>-
# <loss>-k<k>.json` for candidates, `<--out without .json>.sleb-checkpoint.json` for SLEB.
# Options before `--` other than these go to every sbatch call. If a task fails, the jobs
# after it are cancelled (--kill-on-invalid-dep) and, with --wait, this script exits
# non-zero. PUDDING_BIN (default `pudding`) is the binary the jobs run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shards="" rounds="" checkpoint="" wait=0 sbatch_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) shards="$2"; shift 2 ;;
    --shards=*) shards="${1#*=}"; shift ;;
    --rounds) rounds="$2"; shift 2 ;;
    --rounds=*) rounds="${1#*=}"; shift ;;
    --checkpoint) checkpoint="$2"; shift 2 ;;
    --checkpoint=*) checkpoint="${1#*=}"; shift ;;
    --wait) wait=1; shift ;;
    --) shift; break ;;
    *) sbatch_opts+=("$1"); shift ;;
  esac
done
if ! [[ "$shards" =~ ^[1-9][0-9]*$ ]] || ! [[ "$rounds" =~ ^[0-9]+$ ]] \
  || [ -z "$checkpoint" ] || [ $# -eq 0 ]; then
  echo "usage: $0 --shards N --rounds R --checkpoint CKPT [--wait] [SBATCH OPTIONS...] -- candidates|baseline ARGS..." >&2
  exit 2
fi
export PUDDING_SHARDS="$shards" PUDDING_SHARD_FLAG=--step-shard
after=()
for round in $(seq 1 "$rounds"); do
  array_id="$(sbatch --parsable "${sbatch_opts[@]}" "${after[@]}" --array="0-$((shards - 1))" \
    "$here/shard.sbatch" "$@")"
  array_id="${array_id%%;*}"
  merge_id="$(sbatch --parsable "${sbatch_opts[@]}" --dependency="afterok:${array_id}" \
    --kill-on-invalid-dep=yes "$here/merge.sbatch" "$checkpoint")"
  merge_id="${merge_id%%;*}"
  echo "round ${round}/${rounds}: array job ${array_id} (${shards} shards), merge job ${merge_id}"
  after=(--dependency="afterok:${merge_id}" --kill-on-invalid-dep=yes)
done
final_id="$(sbatch --parsable "${sbatch_opts[@]}" "${after[@]}" "$here/run.sbatch" "$@")"
final_id="${final_id%%;*}"
echo "final job ${final_id} writes the search's output"
if [ "$wait" = 1 ]; then
  # shellcheck source=wait.sh
  . "$here/wait.sh"
  wait_for_job "$final_id" "a round failed (see the pudding-*.out logs)"
  echo "search complete"
fi
