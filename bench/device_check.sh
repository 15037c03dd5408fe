#!/usr/bin/env bash
# One-shot check of vbkernels on a lent GPU machine (H100/H200, Python 3.12 as python3,
# torch + CUDA 13, triton, cupy, pytest; no network). Finishes within 8 minutes.
#
#   bash bench/device_check.sh [OUTDIR]          # default: $OUT, else ./device_out
#   bash bench/device_check.sh --dry-run [OUTDIR] # CPU only: exercises every stage's plumbing
#   VBKERNELS_GIT_COMMIT=$(git rev-parse --short=12 HEAD) bash bench/device_check.sh
#       # a copy of the tree without .git: the commit the report records comes from outside
#
# Stages (each under its own timeout; a failure is recorded and the next stage runs):
#   install    pip install --no-deps --no-build-isolation -e .  (PYTHONPATH=. if that fails)
#   env        nvidia-smi, versions, vbkernels.available_backends() and why others do not load
#   warm       in the background during tests and sanitizer: torch.compile of every op at the
#              benchmark size (8 x 4K), one process per op in parallel, each under its own cap;
#              this only fills the on-disk inductor/Triton caches (timings thrown away) and
#              is over before any timing starts
#   tests      python3 -m pytest -q tests -k cuda  (the GPU half; CI runs the CPU half)
#   sanitizer  compute-sanitizer --tool memcheck on bench/sanitize_ops.py (triton, cuda)
#   bench      the eager providers over every row of the roofline table: 8 x 4K (depth,
#              hilbert_project, normals, segmentation K=19/K=150 with uint8 and int64
#              labels, encode_depth), 16 x 1080p (decode_instances vs decode_segmentation
#              K=40) and the float16 16 x 1080p workload
#   colormap   decode_colormap (turbo, uint8, 8 x 4K) on triton (colour-table path and direct
#              scan) and cuda, merged into the bench report (see colormap_bench)
#   widths     segmentation K=19/K=150 with int16 and int32 labels (8 x 4K, triton and
#              cuda), merged into the bench report
#   points     depth_to_points and normals_from_depth (8 x 4K float32 depth: torch reference,
#              fused triton and cuda kernels), merged into the bench report
#   compile    torch.compile timed once per op at 8 x 4K, op by op, each under its own cap
#              (compiles hit the warm caches), then merged into the bench report
# OUTDIR receives at most 8 flat files: summary.txt, setup.log (install + env), tests.log,
# sanitizer.log, bench.log and the report's <gpu>.md/.json/.png. Commit the three report files
# as bench/results/<gpu>.*.

set -u

DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then
  DRY_RUN=1
  shift
fi
OUTDIR="${1:-${OUT:-./device_out}}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
mkdir -p "$OUTDIR" || exit 1
OUTDIR="$(cd "$OUTDIR" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

START=$(date +%s)
BUDGET_S=470          # everything, within 8 minutes
SUMMARY="$WORK/stages.tsv"
: > "$SUMMARY"

# The Triton interpreter must not be on for a GPU run; kernels must see real device faults.
unset TRITON_INTERPRET
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY=python3

# run_stage NAME TIMEOUT_S LOG CMD...: runs CMD with a timeout capped by the time left.
run_stage() {
  local name=$1 limit=$2 log=$3
  shift 3
  local now left t0 rc status
  now=$(date +%s)
  left=$((BUDGET_S - (now - START) - 10))
  if [ "$left" -lt 15 ]; then
    printf '%s\tskipped\t0\tno time left\n' "$name" >> "$SUMMARY"
    echo "== $name: skipped (no time left)" | tee -a "$log"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (timeout ${limit}s): $*" >> "$log"
  echo "== $name (timeout ${limit}s)"
  t0=$(date +%s)
  # bash -c so that a stage may be one of the functions below (exported with export -f).
  timeout --kill-after=5 "$limit" bash -c '"$@"' stage "$@" >> "$log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status="failed(rc=$rc)" ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - t0 ))" "$(basename "$log")" >> "$SUMMARY"
  echo "== $name: $status" >> "$log"
  tail -n 4 "$log"
}

# ---------------------------------------------------------------------------- install
install() {
  if [ "$DRY_RUN" = 1 ]; then
    echo "dry run: not installing; PYTHONPATH=$PYTHONPATH"
    return 0
  fi
  if $PY -m pip install --no-deps --no-build-isolation -e .; then
    return 0
  fi
  echo "pip install failed; using PYTHONPATH=$REPO instead"
  $PY -c "import vbkernels; print('vbkernels importable from', vbkernels.__file__)"
}

# ---------------------------------------------------------------------------- env
env_info() {
  nvidia-smi || echo "nvidia-smi failed"
  $PY - <<'EOF'
import importlib, platform, torch
print("python", platform.python_version())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(), torch.cuda.get_device_capability())
for name in ("triton", "cupy", "numpy", "pytest", "pytest_benchmark", "matplotlib", "hilbertmap", "av"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:
        print(name, "not importable:", type(exc).__name__, exc)
import vbkernels
from vbkernels import _dispatch
print("available_backends", vbkernels.available_backends())
for name in _dispatch.BACKEND_NAMES:
    try:
        b = _dispatch.load_backend(name)
        print(f"  {name}: devices={sorted(b.devices)} ops={sorted(b.ops)}")
    except _dispatch.BackendUnavailable as exc:
        print(f"  {name}: unavailable: {exc}")
EOF
}

# ---------------------------------------------------------------------------- sanitizer
find_sanitizer() {
  local c
  for c in "$(command -v compute-sanitizer 2>/dev/null)" /usr/local/cuda/bin/compute-sanitizer \
           /usr/local/cuda-*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer/compute-sanitizer \
           "$($PY -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null)"/nvidia/*/bin/compute-sanitizer; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

sanitize() {
  if [ "$DRY_RUN" = 1 ]; then
    $PY bench/sanitize_ops.py --device cpu --backends numpy
    return
  fi
  local san
  if ! san=$(find_sanitizer); then
    echo "compute-sanitizer not found; running the same script plainly with CUDA_LAUNCH_BLOCKING=1"
    CUDA_LAUNCH_BLOCKING=1 $PY bench/sanitize_ops.py --device cuda --backends triton,cuda
    echo "NOTE: no memcheck was run (compute-sanitizer missing)"
    return 2
  fi
  echo "using $san"
  # No caching allocator: every tensor is its own allocation, so an out-of-bounds access
  # past a tensor's end is not hidden inside a larger cached block.
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$san" --tool memcheck --target-processes all \
    --error-exitcode 3 --print-limit 40 --leak-check no \
    $PY bench/sanitize_ops.py --device cuda --backends triton,cuda
}

# ---------------------------------------------------------------------------- bench
# Every row of the roofline table, priority first (a cut run loses the last ones).
TABLE_OPS=decode_depth,hilbert_project,decode_normals,decode_segmentation_k19_u8,decode_segmentation_k150_u8,encode_depth,decode_segmentation_k19,decode_segmentation_k150,decode_segmentation_k40,decode_instances_k40
# int16/int32 labels beside uint8 and int64, timed after the table (stage widths).
POINT_OPS=depth_to_points,normals_from_depth
LABEL_WIDTH_OPS=decode_segmentation_k19_i16,decode_segmentation_k19_i32,decode_segmentation_k150_i16,decode_segmentation_k150_i32
COMPILE_OPS=${TABLE_OPS%,decode_segmentation_k40,decode_instances_k40}
TABLE_WORKLOADS=b8-4k-u8-nhwc,b16-1080p-u8-nhwc,b16-1080p-f16-nhwc
COMPILE_WORKLOAD=b8-4k-u8-nhwc

bench_args() {  # the device, and on a dry run the small CPU stand-ins
  if [ "$DRY_RUN" = 1 ]; then
    echo --device cpu --workloads b1-1080p-u8-nhwc --repeats 2 --cell-seconds 0.5
  else
    echo --device cuda
  fi
}

bench() {
  local providers=triton,cuda,torch,cpu,numpy workloads=$TABLE_WORKLOADS extra=--label-table
  if [ "$DRY_RUN" = 1 ]; then
    providers=numpy,torch
    workloads=b1-1080p-u8-nhwc
    extra=
  fi
  # --label-table: the Triton segmentation scan vs the 2^24-entry label table per palette
  # size (the figures behind TABLE_MIN_K), inside the same time budget.
  # shellcheck disable=SC2046
  $PY -m bench $(bench_args) --quick --providers "$providers" --workloads "$workloads" \
    --ops "$TABLE_OPS" --cell-seconds 0.5 --max-seconds "$1" --out "$WORK/results" $extra
}

# decode_segmentation with int16 and int32 labels beside the table's uint8 and int64 rows:
# one workload, the GPU providers, then merged into the bench stage's report.
# bench_extra NAME OPS PROVIDERS MAX_S: a small extra table on the 8 x 4K uint8 batch, merged
# into the main report (the label-width rows; the point ops against the torch reference).
bench_extra() {
  local name=$1 ops=$2 providers=$3 workloads=b8-4k-u8-nhwc main
  if [ "$DRY_RUN" = 1 ]; then
    providers=torch
    workloads=b1-1080p-u8-nhwc
  fi
  # shellcheck disable=SC2046
  $PY -m bench $(bench_args) --quick --providers "$providers" --workloads "$workloads" \
    --ops "$ops" --cell-seconds 0.5 --max-seconds "$4" --out "$WORK/$name" \
    --name "$name" || return
  main=$(ls "$WORK"/results/*.json 2>/dev/null | head -n 1)
  if [ -z "$main" ]; then
    echo "no bench report to merge into"
    return 1
  fi
  $PY -m bench --from-json "$main" --merge "$WORK/$name/$name.json" --out "$WORK/results"
}

# One torch.compile process per op (background, parallel): fills the compile caches only.
warm_compiles() {
  local op
  [ "$DRY_RUN" = 1 ] && return 0
  for op in ${COMPILE_OPS//,/ }; do
    timeout --kill-after=5 "$1" $PY -m bench --device cuda --providers torch_compile --ops "$op" \
      --workloads "$COMPILE_WORKLOAD" --repeats 1 --cell-seconds 0.1 --quiet \
      --out "$WORK/warm/$op" > "$WORK/warm_$op.log" 2>&1 &
  done
  wait
}

# torch.compile timed op by op, each under its own cap, then merged into the report.
time_compiles() {
  local op cap left merged=()
  for op in ${COMPILE_OPS//,/ }; do
    left=$(( BUDGET_S - ($(date +%s) - START) - 25 ))
    cap=$COMPILE_CAP_S
    [ "$cap" -gt "$left" ] && cap=$left
    if [ "$cap" -lt 5 ]; then
      echo "compile $op: skipped (no time left)"
      continue
    fi
    echo "compile $op (cap ${cap}s)"
    # shellcheck disable=SC2046
    timeout --kill-after=5 "$cap" $PY -m bench $(bench_args) --providers torch_compile \
      --ops "$op" --workloads "$([ "$DRY_RUN" = 1 ] && echo b1-1080p-u8-nhwc || echo "$COMPILE_WORKLOAD")" \
      --repeats 5 --quiet --out "$WORK/compile/$op" --name compile \
      || echo "compile $op: rc=$? (a timeout leaves the cell out; the report says not run)"
    [ -f "$WORK/compile/$op/compile.json" ] && merged+=("$WORK/compile/$op/compile.json")
  done
  local list main
  list=$(IFS=,; echo "${merged[*]}")
  main=$(ls "$WORK"/results/*.json 2>/dev/null | head -n 1)  # <gpu>.json of the bench stage
  if [ -z "$main" ]; then
    echo "no bench report to merge into"
    return 1
  fi
  $PY -m bench --from-json "$main" ${list:+--merge "$list"} --out "$WORK/results"
}

# ---------------------------------------------------------------------------- colormap
# decode_colormap of turbo on the 8 x 4K uint8 batch: triton's 2^24-entry colour table
# (built by the first, untimed call) and its direct 255-segment scan, and the cuda scan. A
# stage of its own with a small cap (the torch reference would need minutes at this size),
# taken from what the compile stage would get; its cells are merged into the bench report.
# --cell-seconds 2: the runner sizes a cell from a one-frame probe (the direct scan), and a
# cell too short for 8 x 4K would crop the batch below TABLE_MIN_PIXELS, losing the table row.
COLORMAP_OPS=decode_colormap_turbo,decode_colormap_turbo_direct
colormap_bench() {
  local providers=triton,cuda workload=$COMPILE_WORKLOAD main
  if [ "$DRY_RUN" = 1 ]; then
    providers=cpu  # the torch reference takes seconds per 1080p crop on a small CPU
    workload=b1-1080p-u8-nhwc
  fi
  # shellcheck disable=SC2046
  $PY -m bench $(bench_args) --providers "$providers" --ops "$COLORMAP_OPS" \
    --workloads "$workload" --cell-seconds 2 --max-seconds "$1" --quiet \
    --out "$WORK/colormap" --name colormap || return 1
  main=$(ls "$WORK"/results/*.json 2>/dev/null | head -n 1)
  if [ -z "$main" ]; then
    echo "no bench report to merge into"
    return 1
  fi
  $PY -m bench --from-json "$main" --merge "$WORK/colormap/colormap.json" --out "$WORK/results"
  grep -F decode_colormap "$WORK"/results/*.md | head -n 12
}
export COLORMAP_OPS
export -f colormap_bench

# ---------------------------------------------------------------------------- run
export DRY_RUN REPO WORK PY
export -f install env_info find_sanitizer sanitize bench_args bench bench_extra \
  warm_compiles time_compiles
export TABLE_OPS LABEL_WIDTH_OPS POINT_OPS COMPILE_OPS TABLE_WORKLOADS COMPILE_WORKLOAD START BUDGET_S
if [ "$DRY_RUN" = 1 ]; then
  TEST_ARGS=(-q tests/test_benchmark_report.py -x -p no:cacheprovider)
  BENCH_MAX=20
  COMPILE_CAP_S=90
  COMPILE_OPS=hilbert_project  # one CPU compile shows the plumbing
else
  # The GPU half of the suite: every test whose id names cuda (backend x device pairs on
  # CUDA, the CUDA-only tests). The CPU half runs in CI on every commit.
  TEST_ARGS=(-q tests -k cuda --maxfail=25 -rs --durations=15 -p no:cacheprovider)
  BENCH_MAX=140
  COMPILE_CAP_S=25
fi
export COMPILE_CAP_S

run_stage install 40 "$OUTDIR/setup.log" install
run_stage env 25 "$OUTDIR/setup.log" env_info
# torch.compile of each op compiles on the CPU cores while the tests and the sanitizer run;
# it is over (or killed) before the timed stages start, so no timing overlaps it.
warm_compiles 125 > "$WORK/warm.log" 2>&1 &
WARM_PID=$!
run_stage tests 95 "$OUTDIR/tests.log" $PY -m pytest "${TEST_ARGS[@]}"
run_stage sanitizer 40 "$OUTDIR/sanitizer.log" sanitize
wait "$WARM_PID"
{ echo "== warm-up (torch.compile caches)"; cat "$WORK"/warm*.log 2>/dev/null | tail -n 20; } >> "$OUTDIR/bench.log"
run_stage bench 165 "$OUTDIR/bench.log" bench "$BENCH_MAX"
run_stage colormap 60 "$OUTDIR/bench.log" colormap_bench 40
run_stage widths 45 "$OUTDIR/bench.log" bench_extra widths "$LABEL_WIDTH_OPS" triton,cuda 20
run_stage points 35 "$OUTDIR/bench.log" bench_extra points "$POINT_OPS" torch,triton,cuda 15
run_stage compile 230 "$OUTDIR/bench.log" time_compiles

# At most three report files, flat, named after the GPU (letters, digits, ., -, _ only).
for f in "$WORK"/results/*.md "$WORK"/results/*.json "$WORK"/results/*.png; do
  [ -f "$f" ] && cp "$f" "$OUTDIR/$(basename "$f" | tr -c 'A-Za-z0-9._\n-' '_')"
done

{
  echo "vbkernels device check ($(date -u +%FT%TZ)), $(( $(date +%s) - START ))s in all"
  [ "$DRY_RUN" = 1 ] && echo "DRY RUN (CPU only)"
  if [ -n "${VBKERNELS_GIT_COMMIT:-}" ]; then
    echo "commit $VBKERNELS_GIT_COMMIT (given)"
  else
    git -C "$REPO" describe --always --dirty 2>/dev/null | sed 's/^/commit /'
  fi
  printf '%-10s %-16s %6s  %s\n' stage status seconds log
  while IFS=$'\t' read -r name status secs log; do
    printf '%-10s %-16s %6s  %s\n' "$name" "$status" "$secs" "$log"
  done < "$SUMMARY"
  echo "files in $OUTDIR:"
  ls -1 "$OUTDIR"
} | tee "$OUTDIR/summary.txt"
