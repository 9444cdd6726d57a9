#!/usr/bin/env bash
# Ranks started with different --set values stop before the first cell, every
# rank naming the one that differs, and nothing is recorded (issue 21).
# Usage: different_configs.sh NORMLAB MPIEXEC WORK_DIR
set -euo pipefail
normlab=$1 mpiexec=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
cat >"$work/config.json" <<'JSON'
{
  "name": "different_configs",
  "dataset": {"type": "synthetic", "train_size": 256, "test_size": 64, "classes": 4, "seed": 3},
  "model": "mlp2",
  "norms": ["batch", "none"],
  "batch_sizes": [16],
  "seeds": [0],
  "epochs": 1,
  "evaluation": {"batch_size": 64}
}
JSON
out=$work/out
status=0
# MPMD: rank 0 with lr 0.05, rank 1 with lr 0.5.
"$mpiexec" --oversubscribe -np 1 "$normlab" run "$work/config.json" --out "$out" \
  --set optimizer.lr=0.05 : -np 1 "$normlab" run "$work/config.json" --out "$out" \
  --set optimizer.lr=0.5 >"$work/run.out" 2>"$work/run.err" || status=$?
if [[ $status -eq 0 ]]; then
  echo "mpirun exited 0 with ranks of different configs"
  exit 1
fi
grep -q "normlab run: rank 1 resolved another config than rank 0" "$work/run.err" || {
  echo "no message naming rank 1:"
  cat "$work/run.err"
  exit 1
}
if [[ -s $out/results.jsonl ]]; then
  echo "a cell was recorded:"
  cat "$out/results.jsonl"
  exit 1
fi
# The same values on every rank run.
"$mpiexec" --oversubscribe -np 2 "$normlab" run "$work/config.json" --out "$out" \
  --set optimizer.lr=0.05 >"$work/same.out" 2>"$work/same.err" || {
  cat "$work/same.err"
  exit 1
}
[[ $(wc -l <"$out/results.jsonl") -eq 2 ]] || { echo "expected 2 records"; exit 1; }
echo "ok"
