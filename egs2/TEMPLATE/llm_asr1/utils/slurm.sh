#!/usr/bin/env bash
# Submit a command, once or as a job array, to Slurm and wait for it; same calling
# convention as utils/run.sh:
#
#   utils/slurm.sh [--mem 8G] [--gpu N] [--num_threads N] [--time 24:00:00] \
#       [--partition P] [--max_jobs_run N] [JOB=1:N] LOG command args...
#
# "JOB" becomes $SLURM_ARRAY_TASK_ID. Extra sbatch flags can be given in $SLURM_EXTRA_OPTS.
# Exits non-zero if any array task failed (sbatch --wait reports it).
set -u

mem=""; gpu=0; num_threads=1; time_limit=""; partition=""; max_jobs_run=""
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --mem) mem=$2; shift 2 ;;
        --gpu) gpu=$2; shift 2 ;;
        --num_threads) num_threads=$2; shift 2 ;;
        --time) time_limit=$2; shift 2 ;;
        --partition) partition=$2; shift 2 ;;
        --max_jobs_run) max_jobs_run=$2; shift 2 ;;
        *) echo "$0: unknown option $1" >&2; exit 1 ;;
    esac
done
if [ $# -lt 2 ]; then
    echo "usage: $0 [options] [JOB=1:N] LOG command args..." >&2; exit 1
fi
command -v sbatch >/dev/null || { echo "$0: sbatch not found: is this a Slurm cluster? (use utils/run.sh locally)" >&2; exit 1; }

first=1; last=1; var="JOB"
if [[ "$1" =~ ^([A-Za-z_]+)=([0-9]+):([0-9]+)$ ]]; then
    var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}; shift
fi
log=$1; shift
log_dir=$(dirname "$log"); mkdir -p "$log_dir/q"

# quote each argument for the job script, then let JOB expand to the array index there
cmdline=""
for a in "$@"; do cmdline+="$(printf '%q' "$a") "; done
cmdline=${cmdline//$var/\$\{SLURM_ARRAY_TASK_ID\}}
job_log=${log//$var/\$\{SLURM_ARRAY_TASK_ID\}}
script="$log_dir/q/$(basename "${log//$var/array}").sh"
cat > "$script" <<EOS
#!/usr/bin/env bash
cd "$PWD"
. ./path.sh 2>/dev/null || true
start=\$SECONDS
{ echo "# $cmdline"; echo "# started at \$(date) on \$(hostname)"; } > "$job_log"
$cmdline >> "$job_log" 2>&1
rc=\$?
echo "# elapsed=\$((SECONDS - start)) status=\$rc" >> "$job_log"
exit \$rc
EOS
opts=(--wait --array="${first}-${last}${max_jobs_run:+%$max_jobs_run}" --cpus-per-task="$num_threads"
      --output="$log_dir/q/slurm-%A_%a.out" --job-name="$(basename "${log//$var/}" .log)")
[ -n "$mem" ] && opts+=(--mem="$mem")
[ "$gpu" -gt 0 ] && opts+=(--gres="gpu:$gpu")
[ -n "$time_limit" ] && opts+=(--time="$time_limit")
[ -n "$partition" ] && opts+=(--partition="$partition")
# shellcheck disable=SC2086
sbatch "${opts[@]}" ${SLURM_EXTRA_OPTS:-} "$script" || { echo "$0: job array failed; see ${log}" >&2; exit 1; }
