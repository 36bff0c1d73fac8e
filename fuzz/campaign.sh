#!/usr/bin/env bash
# One fuzz campaign of a target: `fuzz/campaign.sh TARGET SECONDS`.
# Fuzzes from the committed corpus and seeds (fork mode: crashes, timeouts and
# out-of-memory inputs are kept in artifacts/TARGET/ and the run goes on), then minimises
# the corpus back into corpus/TARGET/ and writes the run's numbers to campaign/TARGET.txt.
set -euo pipefail
cd "$(dirname "$0")"
target=$1
seconds=$2
work=corpus-work/$target
mkdir -p "$work" "corpus/$target" "artifacts/$target" campaign
cp -n corpus/"$target"/* seeds/"$target"/* "$work"/ 2>/dev/null || true
log=campaign/$target.log
start=$(date +%s)
cargo +nightly fuzz run "$target" "$work" -- \
    -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -max_len=262144 \
    >"$log" 2>&1 || true
elapsed=$(( $(date +%s) - start ))
# Minimise into the committed corpus (libFuzzer -merge=1 keeps the inputs that add coverage).
rm -rf "corpus/$target.new" && mkdir -p "corpus/$target.new"
cargo +nightly fuzz run "$target" "corpus/$target.new" "$work" -- -merge=1 -rss_limit_mb=2048 \
    -timeout=30 -max_len=262144 >"campaign/$target.cmin.log" 2>&1 || true
if [ -n "$(ls -A "corpus/$target.new")" ]; then
    rm -rf "corpus/$target" && mv "corpus/$target.new" "corpus/$target"
fi
last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
{
    echo "target: $target"
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "seconds: $elapsed"
    echo "last status: $last"
    echo "executions: $(echo "$last" | sed -E 's/^#([0-9]+).*/\1/')"
    echo "coverage (edges): $(echo "$last" | sed -E 's/.*cov: ([0-9]+).*/\1/')"
    echo "corpus files (minimised): $(ls "corpus/$target" | wc -l)"
    echo "corpus bytes (minimised): $(du -sb "corpus/$target" | cut -f1)"
    echo "artifacts (crashes, timeouts, ooms): $(ls "artifacts/$target" | wc -l)"
} > "campaign/$target.txt"
cat "campaign/$target.txt"
