#!/usr/bin/env bash
# One-shot check of vbkernels on a lent GPU machine (H100/H200, Python 3.12 as python3,
# torch + CUDA 13, triton, cupy, pytest; no network). Finishes within 8 minutes.
#
#   bash bench/device_check.sh [OUTDIR]          # default: $OUT, else ./device_out
#   bash bench/device_check.sh --dry-run [OUTDIR] # CPU only: exercises every stage's plumbing
#
# Stages (each under its own timeout; a failure is recorded and the next stage runs):
#   install    pip install --no-deps --no-build-isolation -e .  (PYTHONPATH=. if that fails)
#   env        nvidia-smi, versions, vbkernels.available_backends() and why others do not load
#   tests      python3 -m pytest -q tests -x  (CUDA-parametrized tests run; PyAV/hilbertmap skip)
#   sanitizer  compute-sanitizer --tool memcheck on bench/sanitize_ops.py (triton, cuda)
#   bench      python3 -m bench --device cuda --quick (JSON, Markdown, PNG)
# OUTDIR receives at most 8 flat files: summary.txt, setup.log (install + env), tests.log,
# sanitizer.log, bench.log and the report's <gpu>.md/.json/.png. Commit the Markdown as bench/results/<gpu>.md.

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
BUDGET_S=530          # everything; the lease allows one ~9-minute call
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
bench() {
  local args=(--quick --out "$WORK/results" --max-seconds "$1"
              --ops decode_depth,decode_normals,decode_segmentation_k19,decode_segmentation_k150,hilbert_project,encode_depth,decode_segmentation_k40,decode_instances_k40)
  if [ "$DRY_RUN" = 1 ]; then
    args+=(--device cpu --providers numpy,torch --workloads b1-1080p-u8-nhwc --repeats 2 --cell-seconds 1)
  else
    # Providers in priority order, each over every --quick workload before the next (8 x 4K,
    # issue 5's target, then 16 x 1080p, issue 6's decode_instances target): if time runs
    # out, the GPU kernels and their baselines are measured first; torch.compile (a
    # full-size compile per op, tens of seconds each) takes what time is left.
    args+=(--device cuda --providers triton,cuda,torch,numpy,cpu,torch_compile)
  fi
  $PY -m bench "${args[@]}"
}

# ---------------------------------------------------------------------------- run
export DRY_RUN REPO WORK PY
export -f install env_info find_sanitizer sanitize bench
if [ "$DRY_RUN" = 1 ]; then
  TEST_ARGS=(-q tests/test_benchmark_report.py -x -p no:cacheprovider)
  BENCH_MAX=20
else
  # The GPU half of the suite: every test whose id names cuda (backend x device pairs on
  # CUDA, the CUDA-only tests). The CPU half runs in CI on every commit.
  TEST_ARGS=(-q tests -k cuda --maxfail=25 -rs --durations=15 -p no:cacheprovider)
  BENCH_MAX=140
fi

run_stage install 60 "$OUTDIR/setup.log" install
run_stage env 20 "$OUTDIR/setup.log" env_info
run_stage tests 210 "$OUTDIR/tests.log" $PY -m pytest "${TEST_ARGS[@]}"
run_stage sanitizer 70 "$OUTDIR/sanitizer.log" sanitize
if [ "$DRY_RUN" = 0 ]; then
  # Triton's quick figures, from the benchmark report: decode_depth and hilbert_project on
  # 8 x 4K beside a device copy of the same bytes, and the segmentation scan vs the 2^24-entry
  # label table per palette size (sets TABLE_MIN_K), printed into bench.log.
  run_stage triton_measure 60 "$OUTDIR/bench.log" $PY -m bench --device cuda --quick \
    --providers triton --ops decode_depth,hilbert_project --workloads b8-4k-u8-nhwc \
    --label-table --out "$WORK/triton_measure"
fi
run_stage bench 150 "$OUTDIR/bench.log" bench "$BENCH_MAX"

# At most three report files, flat, named after the GPU (letters, digits, ., -, _ only).
for f in "$WORK"/results/*.md "$WORK"/results/*.json "$WORK"/results/*.png; do
  [ -f "$f" ] && cp "$f" "$OUTDIR/$(basename "$f" | tr -c 'A-Za-z0-9._\n-' '_')"
done

{
  echo "vbkernels device check ($(date -u +%FT%TZ)), $(( $(date +%s) - START ))s in all"
  [ "$DRY_RUN" = 1 ] && echo "DRY RUN (CPU only)"
  git -C "$REPO" describe --always --dirty 2>/dev/null | sed 's/^/commit /'
  printf '%-10s %-16s %6s  %s\n' stage status seconds log
  while IFS=$'\t' read -r name status secs log; do
    printf '%-10s %-16s %6s  %s\n' "$name" "$status" "$secs" "$log"
  done < "$SUMMARY"
  echo "files in $OUTDIR:"
  ls -1 "$OUTDIR"
} | tee "$OUTDIR/summary.txt"
