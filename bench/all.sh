#!/usr/bin/env bash
# Every benchmark behind a figure of docs/benchmarks.md, one after another (about an hour),
# with the commands the document names. Each one's output goes to bench/results/all/NAME.txt
# and a log of start and end times (with the machine's CPU pressure) to bench/results/all/log.
#
#   bash bench/all.sh                          # all of them
#   bash bench/all.sh proxy 'executor-*'       # those named, or matching a shell pattern
#
# Needs the dev setup (bash scripts/setup.sh dev), wrk (Debian's package), PostgreSQL on
# 127.0.0.1:5432 (database test) and Redis on 127.0.0.1:6379. Run nothing else meanwhile.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
out=bench/results/all
pg=postgresql://postgres@127.0.0.1:5432/test
redis=redis://127.0.0.1:6379/0
mkdir -p "$out"

wanted() {
    local name=$1 word
    shift
    [ $# -eq 0 ] && return 0
    # shellcheck disable=SC2053  # the words are patterns
    for word in "${@}"; do [[ $name == $word ]] && return 0; done
    return 1
}

run() {
    local name=$1
    shift
    wanted "$name" "${selection[@]}" || return 0
    {
        echo "=== $name $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $*"
        head -1 /proc/pressure/cpu 2>/dev/null
    } >>"$out/log"
    "$@" >"$out/$name.txt" 2>&1
    echo "exit $? $(date -u +%FT%TZ)" >>"$out/log"
}

selection=("$@")
wrk="--client wrk --pin --max-concurrency 256"
run proxy "$py" bench/proxy.py $wrk --seconds 8 --rounds 2 --floor
run proxy-aiohttp "$py" bench/proxy.py --requests 3000 --max-concurrency 256 --rounds 2 --floor
# two settings compared: the runs alternate (A B B A), as the machine drifts between runs
abba() {
    local name=$1 a=$2 b=$3
    shift 3
    run "$name-1" "$@" $a
    run "$name-2" "$@" $b
    run "$name-3" "$@" $b
    run "$name-4" "$@" $a
}
abba proxy-log-rows "--sample-rate 1" "--sample-rate 0" "$py" bench/proxy.py $wrk --seconds 8 \
    --rounds 1
abba proxy-limits "" "--limits" "$py" bench/proxy.py $wrk --seconds 8 --rounds 1
abba proxy-redis "" "--redis $redis" "$py" bench/proxy.py $wrk --seconds 8 --rounds 1 \
    --concurrency 32
abba proxy-redis-limits "--limits" "--limits --redis $redis" "$py" bench/proxy.py $wrk \
    --seconds 8 --rounds 1 --concurrency 32
run proxy-slow-default "$py" bench/proxy.py --client wrk --pin --seconds 10 --concurrency 128 \
    --rounds 1 --upstream-delay 0.05
run proxy-slow-64 "$py" bench/proxy.py --client wrk --pin --seconds 10 --concurrency 128 \
    --rounds 1 --upstream-delay 0.05 --max-concurrency 64
run redis-client "$py" bench/redis_client.py
lines="--lines 10000"
run executor-sqlite "$py" bench/executor.py $lines --concurrency 4,64,256 \
    --arms aiohttp,aiohttp-files,aiohttp-plain,openai,gateway --output "$out/executor-sqlite.json"
run executor-postgresql "$py" bench/executor.py $lines --concurrency 4,64,256 \
    --arms aiohttp,aiohttp-files,aiohttp-plain,openai,gateway --database postgresql \
    --output "$out/executor-postgresql.json"
run executor-slow-sqlite "$py" bench/executor.py $lines --concurrency 64,256 \
    --arms aiohttp,aiohttp-files,aiohttp-plain,gateway --upstream-delay 0.05 \
    --output "$out/executor-slow-sqlite.json"
run executor-slow-postgresql "$py" bench/executor.py $lines --concurrency 64,256 \
    --arms aiohttp,aiohttp-files,aiohttp-plain,gateway --upstream-delay 0.05 \
    --database postgresql --output "$out/executor-slow-postgresql.json"
run memory "$py" bench/memory.py --sizes-mb 20,160 --line-kb 3
run memory-inline "$py" bench/memory.py --sizes-mb 20,212 --inline
run restarts-sqlite "$py" bench/restarts.py
run restarts-postgresql "$py" bench/restarts.py --database postgresql
run ratelimited "$py" bench/ratelimited.py
run idle "$py" bench/idle.py --seconds 60 --rounds 2
run scale "$py" bench/scale.py --workers 1,2,4 --lines 12000 --rounds 2
run console "$py" bench/console.py --explain --postgres "$pg"
echo "=== done $(date -u +%FT%TZ)" >>"$out/log"
