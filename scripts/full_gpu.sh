#!/usr/bin/env bash
# Every full-size cbn experiment (the paper's settings), concurrently on one CUDA GPU (issue 12 item 6).
#
#   scripts/full_gpu.sh [OUT] [DATA]      OUT: run root (default runs/full_gpu), DATA: folder with MNIST
#
# Each experiment trains in float32 on the GPU (the training loop reads the loss only at record and checkpoint
# points, so a step does not wait for the device) and is analysed in float64 on the CPU. Runs resume: a second
# call reuses every finished stage. Prints one line per experiment with its wall time and exit status, and
# writes the same to OUT/full_gpu_times.tsv. Needs no network.
#
# For a dry run of the plumbing elsewhere: FULL_GPU_DEVICE=cpu FULL_GPU_SCALE=quick FULL_GPU_EXPERIMENTS="cbn-depth"
# FULL_GPU_ARGS="--set adam_steps=4" (tests/test_full_gpu_script.py does this).
set -u -o pipefail

out=${1:-runs/full_gpu}
data=${2:-${FREQLENS_DATA:-../shared/data}}
freqlens=${FREQLENS:-freqlens}
device=${FULL_GPU_DEVICE:-cuda}
scale=${FULL_GPU_SCALE:-full}
read -r -a experiments <<<"${FULL_GPU_EXPERIMENTS:-cbn-fig1 cbn-fig2 cbn-fig3 cbn-fig4 cbn-depth}"
read -r -a extra <<<"${FULL_GPU_ARGS:-}"

if [ "$device" = cuda ] && ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "full_gpu.sh: no CUDA device visible to torch; run it on a GPU machine (the CPU scales are --scale medium)" >&2
    exit 2
fi
mkdir -p "$out/logs"

start_all=$(date +%s)
for name in "${experiments[@]}"; do
    own=()
    # cbn-depth is 27 small nets: on one GPU they run as concurrent worker processes (each its own CUDA context),
    # since one small net at a time leaves the GPU idle between kernel launches
    [ "$name" = cbn-depth ] && [ "$device" = cuda ] && own=(--set "workers=${FULL_GPU_DEPTH_WORKERS:-9}")
    (
        t0=$(date +%s)
        # one CPU thread each: five processes share the host's cores for the float64 analysis
        OMP_NUM_THREADS=1 "$freqlens" reproduce "$name" --scale "$scale" --device "$device" --threads 1 --no-progress \
            --data "$data" --out "$out" "${own[@]}" "${extra[@]}" >"$out/logs/$name.log" 2>&1
        rc=$?
        printf '%s\t%s\t%s\n' "$name" "$(($(date +%s) - t0))" "$rc" >"$out/logs/$name.time"
    ) &
done
wait

status=0
printf 'experiment\twall_s\texit\n' >"$out/full_gpu_times.tsv"
for name in "${experiments[@]}"; do
    tee -a "$out/full_gpu_times.tsv" <"$out/logs/$name.time"
    [ "$(cut -f3 "$out/logs/$name.time")" = 0 ] || status=1
done
echo "all cbn full runs: $(($(date +%s) - start_all)) s wall (logs in $out/logs)"
exit $status
