#!/usr/bin/env bash
# A rank killed in the middle of `mpirun normlab run` ends the job with an
# error naming the lost rank; the cells finished before stay in results.jsonl,
# and running again resumes with them.
# Usage: killed_rank.sh NORMLAB MPIEXEC WORK_DIR
set -euo pipefail
normlab=$1 mpiexec=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
# Enough cells that the kill lands in the middle of the run.
cat >"$work/config.json" <<'JSON'
{
  "name": "killed_rank",
  "dataset": {"type": "synthetic", "train_size": 2048, "test_size": 256, "classes": 10, "seed": 3},
  "model": "mlp2",
  "norms": ["batch", "group", "layer", "none"],
  "batch_sizes": [16, 8, 4],
  "seeds": [0, 1],
  "epochs": 2,
  "evaluation": {"batch_size": 256}
}
JSON
out=$work/out
"$mpiexec" --oversubscribe -np 3 "$normlab" run "$work/config.json" --out "$out" \
  >"$work/first.out" 2>"$work/first.err" &
job=$!

# Wait for a first finished cell, then kill rank 2 (found by its Open MPI rank).
for _ in $(seq 600); do
  [[ -s $out/results.jsonl ]] && break
  sleep 0.1
done
[[ -s $out/results.jsonl ]] || { echo "no cell finished"; kill $job; exit 1; }
victim=""
for pid in $(pgrep -f "$normlab run $work/config.json" || true); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=2'; then
    victim=$pid
  fi
done
[[ -n $victim ]] || { echo "rank 2 not found"; kill $job; exit 1; }
kill -9 "$victim"
if wait $job; then
  echo "mpirun succeeded although rank 2 was killed"
  exit 1
fi
if ! grep -qiE 'rank 2|signal 9|killed' "$work/first.err"; then
  echo "the error does not name what happened:"
  cat "$work/first.err"
  exit 1
fi
finished=$(wc -l <"$out/results.jsonl")
echo "killed rank 2 (pid $victim) after $finished finished cells; the job ended with an error"
((finished >= 1 && finished < 24)) || { echo "unexpected $finished finished cells"; exit 1; }

# A rerun keeps the finished cells and trains the rest.
"$mpiexec" --oversubscribe -np 3 "$normlab" run "$work/config.json" --out "$out" \
  >"$work/second.out" 2>"$work/second.err"
grep -q "$finished finished before" "$work/second.err" ||
  { echo "the rerun did not resume:"; cat "$work/second.err"; exit 1; }
total=$(wc -l <"$out/results.jsonl")
((total == 24)) || { echo "after the rerun $total records, expected 24"; exit 1; }
echo "the rerun resumed from $finished cells and finished all 24"
