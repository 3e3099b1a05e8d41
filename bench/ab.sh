#!/usr/bin/env bash
# One benchmark at two commits, side by side: runs A, B, B, A (the machine drifts between
# runs), each with that commit's own bench script and code (a git worktree, its src/ first
# on PYTHONPATH), in this checkout's .venv. Outputs go to bench/results/ab/N-COMMIT.txt.
#
#   bash bench/ab.sh 81b0f96 HEAD bench/proxy.py --client wrk --pin --rounds 1
#
# Needs what the benchmark needs (see bench/README.md). Run nothing else meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
    echo "usage: bash bench/ab.sh COMMIT_A COMMIT_B BENCH_SCRIPT [ARGS...]" >&2
    exit 2
fi
a=$(git rev-parse --short "$1")
b=$(git rev-parse --short "$2")
shift 2
root=$(pwd)
out=$root/bench/results/ab
trees=$(mktemp -d)
trap 'for t in "$trees"/*; do git worktree remove --force "$t"; done; rm -rf "$trees"' EXIT
mkdir -p "$out"
for commit in "$a" "$b"; do
    git worktree add --quiet --detach "$trees/$commit" "$commit"
done
n=0
for commit in "$a" "$b" "$b" "$a"; do
    n=$((n + 1))
    echo "=== $n $commit $(date -u +%FT%TZ) $*" | tee -a "$out/log"
    status=0
    (cd "$trees/$commit" && PYTHONPATH="$trees/$commit/src" "$root/.venv/bin/python" "$@") \
        >"$out/$n-$commit.txt" 2>&1 || status=$?
    echo "exit $status $(date -u +%FT%TZ)" >>"$out/log"
done
