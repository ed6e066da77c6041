#!/usr/bin/env bash
# Long training as a chain of jobs instead of requeue: submit COUNT copies of
# slurm/train.sbatch with the same job name and --dependency=singleton (SLURM runs at most one
# job of that name and user at a time, each after the previous one ended, however it ended).
# Every copy resumes from the newest valid checkpoint in one shared directory; a copy that
# reaches its time limit checkpoints on SIGUSR1 (train.sbatch's --signal=B:USR1@180) and
# exits 75, and the next one continues. Copies that start after training finished only
# load the final checkpoint and print the metrics again (or: scancel --name NAME).
#
#   slurm/chain.sh COUNT NAME [sbatch options ...] [-- JOB [job options ...]]
#   slurm/chain.sh 5 lr-w8a -n 8 -t 2:00:00 -- sparse_lr --data w8a --epochs 200
#   sbatch --dependency=afterok:<last id> eval.sbatch  # once the chain trained to the end
#
# Knobs: MPIPS_CHECKPOINT_DIR [$PWD/mpips-ckpt/NAME]; MPIPS_REQUEUE is set to 0 (a stopped
# copy exits instead of requeueing); every other train.sbatch knob (MPIPS_PYTHON, MPIPS_MPI,
# MPIPS_SERVERS, ...) is passed on through the environment. Prints the job ids, one a line.
set -euo pipefail

usage() {
    echo "usage: slurm/chain.sh COUNT NAME [sbatch options ...] [-- JOB [job options ...]]" >&2
    exit 2
}
[ $# -ge 2 ] || usage
COUNT=$1 NAME=$2
shift 2
[[ $COUNT =~ ^[1-9][0-9]*$ ]] || usage
SBATCH_OPTS=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do SBATCH_OPTS+=("$1"); shift; done
[ $# -gt 0 ] && shift   # the --

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export MPIPS_CHECKPOINT_DIR=${MPIPS_CHECKPOINT_DIR:-$PWD/mpips-ckpt/$NAME}
export MPIPS_REQUEUE=0
for _ in $(seq "$COUNT"); do
    sbatch --parsable --job-name="$NAME" --dependency=singleton \
        ${SBATCH_OPTS[@]+"${SBATCH_OPTS[@]}"} "$HERE/train.sbatch" "$@"
done
