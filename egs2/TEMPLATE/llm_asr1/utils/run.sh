#!/usr/bin/env bash
# Run a command locally, once or as a job array, logging each job to its own file.
#
#   utils/run.sh [options] LOG command args...
#   utils/run.sh [options] JOB=1:N LOG_WITH_JOB command args-with-JOB...
#
# Every "JOB" in LOG and in the arguments is replaced by the job index. Jobs run in
# parallel (at most --max_jobs_run at a time). Each log starts with the command line and
# ends with "# elapsed=<s> status=<rc>". Exits non-zero if any job failed, naming the logs.
# A log a rerun would overwrite is kept as LOG.1 (the one before as LOG.2, ...), at most
# --keep_logs of them (default 3, or $RUN_KEEP_LOGS; 0 keeps none).
# Accepted for compatibility with cluster backends and ignored here: --mem, --gpu,
# --num_threads, --time. The command is run directly (no shell): no pipes inside it.
set -u

max_jobs_run=${RUN_MAX_JOBS:-$(nproc 2>/dev/null || echo 1)}
keep_logs=${RUN_KEEP_LOGS:-3}
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --max_jobs_run) max_jobs_run=$2; shift 2 ;;
        --keep_logs) keep_logs=$2; shift 2 ;;
        --mem|--gpu|--num_threads|--time) shift 2 ;;
        *) echo "$0: unknown option $1" >&2; exit 1 ;;
    esac
done
if [ $# -lt 2 ]; then
    echo "usage: $0 [--max_jobs_run N] [--keep_logs N] [JOB=1:N] LOG command args..." >&2; exit 1
fi
if ! [[ "$keep_logs" =~ ^[0-9]+$ ]]; then
    echo "$0: --keep_logs (RUN_KEEP_LOGS) must be a number, got '$keep_logs'" >&2; exit 1
fi

first=1; last=1; var=""
if [[ "$1" =~ ^([A-Za-z_]+)=([0-9]+):([0-9]+)$ ]]; then
    var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}; shift
elif [[ "$1" =~ ^([A-Za-z_]+)=([0-9]+)$ ]]; then
    var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=$first; shift
fi
log_pattern=$1; shift

# Share the cores between concurrent jobs unless the user chose a thread count.
if [ -z "${OMP_NUM_THREADS:-}" ]; then
    concurrent=$(( last - first + 1 )); [ "$concurrent" -gt "$max_jobs_run" ] && concurrent=$max_jobs_run
    threads=$(( $(nproc 2>/dev/null || echo 1) / concurrent )); [ "$threads" -lt 1 ] && threads=1
    export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
fi

# LOG -> LOG.1 -> LOG.2 ...: a rerun keeps the logs of the runs before it (at most keep_logs).
rotate_log() {
    local log=$1 i
    [ -e "$log" ] && [ "$keep_logs" -gt 0 ] || return 0
    rm -f "$log.$keep_logs"
    for ((i = keep_logs - 1; i >= 1; i--)); do
        if [ -e "$log.$i" ]; then mv -f "$log.$i" "$log.$((i + 1))"; fi
    done
    mv -f "$log" "$log.1"
}

run_one() {
    local j=$1; shift
    local log=$log_pattern args=() a
    [ -n "$var" ] && log=${log//$var/$j}
    for a in "$@"; do args+=("${a//${var:-__NO_JOB_VAR__}/$j}"); done
    mkdir -p "$(dirname "$log")"
    rotate_log "$log"
    local start=$SECONDS
    {
        echo "# ${args[*]}"
        echo "# started at $(date)"
    } > "$log"
    "${args[@]}" >> "$log" 2>&1
    local rc=$?
    echo "# elapsed=$((SECONDS - start)) status=$rc" >> "$log"
    return $rc
}

pids=(); jobs_of=()
for ((j = first; j <= last; j++)); do
    while [ "$(jobs -rp | wc -l)" -ge "$max_jobs_run" ]; do wait -n 2>/dev/null || true; done
    run_one "$j" "$@" &
    pids+=($!); jobs_of+=("$j")
done

failed=0; failed_logs=()
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        failed=$((failed + 1))
        l=$log_pattern; [ -n "$var" ] && l=${l//$var/${jobs_of[$i]}}
        failed_logs+=("$l")
    fi
done
if [ $failed -gt 0 ]; then
    echo "$0: $failed / $((last - first + 1)) jobs failed; see ${failed_logs[*]}" >&2
    for l in "${failed_logs[@]:0:1}"; do echo "--- last lines of $l:" >&2; tail -n 15 "$l" >&2; done
    exit 1
fi
exit 0
