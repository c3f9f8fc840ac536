# Job backends. Every stage runs its work as "${train_cmd} [JOB=1:N] LOG command ...".
#   local: utils/run.sh runs jobs on this machine, in parallel, one log per job.
#   slurm: utils/slurm.sh submits job arrays with sbatch and waits for them.
# Pick with: cmd_backend=slurm ./run.sh ...   (or edit the default below)
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        export train_cmd="utils/run.sh"
        export cuda_cmd="utils/run.sh"
        export decode_cmd="utils/run.sh"
        ;;
    slurm)
        export train_cmd="utils/slurm.sh --mem 4G --num_threads 2"
        export cuda_cmd="utils/slurm.sh --mem 32G --num_threads 4"
        export decode_cmd="utils/slurm.sh --mem 8G --num_threads 1"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2
        return 1 ;;
esac
