# Sourced by submit.sh and search.sh: wait_for_job ID WHY waits until Slurm job ID ends;
# returns 0 if it COMPLETED, else prints its final state with WHY (what most likely went
# wrong) and exits 1. `sbatch --wait` cannot wait on a job that already exists, so this
# polls sacct (when accounting runs) or scontrol.
wait_for_job() {
  local id="$1" why="$2" state
  while :; do
    state="$(sacct -n -X -j "$id" -o State 2>/dev/null | head -1 | tr -d ' ' || true)"
    if [ -z "$state" ]; then
      state="$(scontrol show job "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1)"
    fi
    case "$state" in
      COMPLETED) return 0 ;;
      FAILED|CANCELLED*|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|DEADLINE)
        echo "job ${id} ended ${state}: ${why}" >&2
        exit 1 ;;
      "") echo "job ${id} is no longer known to Slurm" >&2; exit 1 ;;
    esac
    sleep 2
  done
}
