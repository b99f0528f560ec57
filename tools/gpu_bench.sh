#!/usr/bin/env bash
# GPU figures in one run, on a machine where nothing is built (a lent NVIDIA GPU with PyTorch
# and no network): our wgpu backend (over the NVIDIA Vulkan driver) against the published
# PyTorch loop on CUDA. Writes JSON lines to OUTDIR; finishes in under 8 minutes (every step
# has a timeout, and steps that no longer fit are skipped and recorded as such).
#
# 1. HERE (with the toolchain), from the repository root, build with `--features wgpu` and pack
#    the binaries (steex, weights-convert, the parity test binaries, the explain_step bench),
#    stripped, with this machine's Vulkan loader (Debian's libvulkan1) when it has one:
#
#        bash tools/gpu_bench.sh --pack        # -> target/gpu-bench.tar.xz (about 40 MB)
#
#    which runs
#        cargo test  --release --workspace --features steex/wgpu --no-run
#        cargo bench --workspace --features steex/wgpu --bench explain_step --no-run
#    and copies the executables into target/gpu-bench/ before packing it.
# 2. Carry target/gpu-bench.tar.xz along with the working tree (the test fixtures under
#    tests/fixtures and tools/bench_reference.py are tracked files) and run, on the GPU machine,
#    from the repository root:
#
#        bash tools/gpu_bench.sh OUTDIR
#
#    OUTDIR gets env.json (machine, driver, Vulkan), steps.jsonl (one line per step: what ran,
#    exit status, seconds, peak GPU memory from nvidia-smi), results.jsonl (the bench lines,
#    ours and the reference's), summary.json (ms/step, s per 100 steps, ratio to the published
#    loop per preset and batch) and each step's log.
#
# GPU_BENCH_QUICK=1 (or --quick): a quick end-to-end check (celeba batch 1, 2 steps, one parity
# test per binary); used to dry-run the script on lavapipe (software Vulkan).
# PYTHON: the interpreter with PyTorch (default python3). GPU_BENCH_BUDGET_S: total seconds (450).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BUNDLE="$ROOT/target/gpu-bench"
PARITY=(sean_parity classifier_parity deeplab_parity metrics_parity explain_parity)

pack() {
    set -e
    cargo test --release --workspace --features steex/wgpu --no-run
    local json
    json=$(cargo test --release --workspace --features steex/wgpu --no-run --message-format=json 2>/dev/null)
    cargo bench --workspace --features steex/wgpu --bench explain_step --no-run
    local bench_json
    bench_json=$(cargo bench --workspace --features steex/wgpu --bench explain_step --no-run --message-format=json 2>/dev/null)
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/bin" "$BUNDLE/tests" "$BUNDLE/lib"
    cp target/release/steex target/release/weights-convert "$BUNDLE/bin/"
    local exe
    for t in "${PARITY[@]}"; do
        exe=$(printf '%s\n' "$json" | python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name and m.get("executable"):
        print(m["executable"])' "$t" | tail -1)
        [ -n "$exe" ] || { echo "no test binary for $t" >&2; return 1; }
        cp "$exe" "$BUNDLE/tests/$t"
    done
    exe=$(printf '%s\n' "$bench_json" | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "explain_step" and m.get("executable"):
        print(m["executable"])' | tail -1)
    [ -n "$exe" ] || { echo "no explain_step bench binary" >&2; return 1; }
    cp "$exe" "$BUNDLE/bin/explain_step"
    strip "$BUNDLE"/bin/* "$BUNDLE"/tests/*
    local loader
    loader=$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')
    if [ -n "$loader" ]; then cp -L "$loader" "$BUNDLE/lib/libvulkan.so.1"; else echo "note: no Vulkan loader here to pack"; fi
    git rev-parse HEAD >"$BUNDLE/commit" 2>/dev/null || true
    # The binaries share most of their code: a dictionary larger than one of them finds it
    # (about 38 MB instead of 72 MB with xz's default; a few minutes on one core).
    tar -C target -cf - gpu-bench | xz -T1 --lzma2=preset=6,dict=512MiB >target/gpu-bench.tar.xz
    du -h target/gpu-bench.tar.xz
    echo "carry target/gpu-bench.tar.xz; on the GPU machine: bash tools/gpu_bench.sh OUTDIR"
}

if [ "${1:-}" = "--pack" ]; then
    pack
    exit $?
fi
QUICK="${GPU_BENCH_QUICK:-0}"
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
OUT="${1:?usage: tools/gpu_bench.sh [--quick] OUTDIR | tools/gpu_bench.sh --pack}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
T0=$(date +%s)
BUDGET="${GPU_BENCH_BUDGET_S:-450}"

if [ ! -x "$BUNDLE/bin/steex" ]; then
    [ -f "$ROOT/target/gpu-bench.tar.xz" ] || { echo "no target/gpu-bench.tar.xz: pack it first (--pack)" >&2; exit 1; }
    tar -C "$ROOT/target" -xJf "$ROOT/target/gpu-bench.tar.xz"
fi

# Vulkan: the loader from the machine, else the packed one; NVIDIA's driver (ICD) from the
# machine, else a manifest written here for the driver library the container has.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/steex-xdg-runtime}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
if ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    LOADER=system
elif [ -f "$BUNDLE/lib/libvulkan.so.1" ]; then
    export LD_LIBRARY_PATH="$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    LOADER=packed
else
    LOADER=none
fi
ICDS=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
if ! printf '%s' "$ICDS" | grep -q nvidia && ldconfig -p 2>/dev/null | grep -q 'libGLX_nvidia\.so\.0'; then
    mkdir -p "$OUT/icd"
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"libGLX_nvidia.so.0","api_version":"1.3"}}\n' \
        >"$OUT/icd/nvidia_icd.json"
    export VK_DRIVER_FILES="$OUT/icd/nvidia_icd.json" VK_ICD_FILENAMES="$OUT/icd/nvidia_icd.json"
    ICDS="$ICDS(written: $OUT/icd/nvidia_icd.json)"
fi
export STEEX_TEST_DEVICE=wgpu STEEX_TEST_ROOT="$ROOT" STEEX_TEST_BIN_DIR="$BUNDLE/bin"

json_str() { "$PY" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1" 2>/dev/null || printf '"%s"' "${1//\"/\'}"; }
{
    printf '{"date":%s,"host":%s,"commit":%s,"quick":%s,"vulkan_loader":"%s","vulkan_icds":%s,' \
        "$(json_str "$(date -u +%FT%TZ)")" "$(json_str "$(hostname)")" \
        "$(json_str "$(cat "$BUNDLE/commit" 2>/dev/null)")" "$QUICK" "$LOADER" "$(json_str "$ICDS")"
    printf '"nvidia_smi":%s,"cpu":%s,"cores":%s,"torch":%s}\n' \
        "$(json_str "$(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -4 || echo 'no nvidia-smi')")" \
        "$(json_str "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)")" "$(nproc)" \
        "$(json_str "$("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1)")"
} >"$OUT/env.json"
cat "$OUT/env.json"

remaining() { echo $((BUDGET - ($(date +%s) - T0))); }

# step NAME CAP_SECONDS CMD...: runs CMD with a timeout of min(CAP, what is left), its log in
# OUT/NAME.log, its JSON lines appended to results.jsonl, and one line in steps.jsonl.
step() {
    local name=$1 cap=$2; shift 2
    local left limit
    left=$(remaining)
    limit=$((cap < left - 5 ? cap : left - 5))
    if [ "$limit" -lt 10 ]; then
        printf '{"step":"%s","skipped":"out of time"}\n' "$name" | tee -a "$OUT/steps.jsonl"
        return 0
    fi
    local smi="" smi_pid="" base=""
    if command -v nvidia-smi >/dev/null; then
        base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
        smi="$OUT/$name.smi"
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$smi" 2>/dev/null &
        smi_pid=$!
    fi
    local t=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    local secs
    secs=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    local peak=null
    if [ -n "$smi_pid" ]; then
        kill "$smi_pid" 2>/dev/null; wait "$smi_pid" 2>/dev/null
        peak=$(awk -v b="${base:-0}" 'NF && $1+0 > m {m = $1+0} END {if (m == "") print "null"; else print m - b}' "$smi")
    fi
    local info=""
    if grep -q '^test result:' "$OUT/$name.log"; then
        info=$(grep '^test result:' "$OUT/$name.log" | tail -1 | sed 's/"/ /g')
    fi
    grep '^{' "$OUT/$name.log" | "$PY" -c '
import json, sys
step, peak = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    try:
        r = json.loads(line)
    except ValueError:
        continue
    r["step"] = step
    r["gpu_mem_used_mib"] = None if peak == "null" else float(peak)
    print(json.dumps(r))' "$name" "$peak" >>"$OUT/results.jsonl" 2>/dev/null
    printf '{"step":"%s","rc":%d,"timed_out":%s,"limit_s":%d,"seconds":%s,"gpu_mem_used_mib":%s,"tests":"%s","cmd":%s}\n' \
        "$name" "$rc" "$([ $rc = 124 ] || [ $rc = 137 ] && echo true || echo false)" "$limit" "$secs" "$peak" \
        "$info" "$(json_str "$*")" | tee -a "$OUT/steps.jsonl"
}

# 1. The device.
step device 60 "$BUNDLE/bin/steex" --device wgpu device
cat "$OUT/device.log"

# 2. The parity tests on wgpu, all binaries at once (correctness only: nothing else runs).
declare -A FILTER=()
if [ "$QUICK" = 1 ]; then
    FILTER=([sean_parity]=absent_labels [classifier_parity]=output_names [deeplab_parity]=reduced
        [metrics_parity]=reduced_width [explain_parity]=targeted_rows)
fi
pids=()
for t in "${PARITY[@]}"; do
    step "parity_$t" 150 "$BUNDLE/tests/$t" ${FILTER[$t]:-} &
    pids+=($!)
done
wait "${pids[@]}"

# 3. Ours on wgpu and the published loop on CUDA, the same configuration one after the other
#    (the figures that matter most first, in case time runs out).
if [ "$QUICK" = 1 ]; then
    # (on a software Vulkan driver one celeba step takes minutes: the cap is what is left)
    GRID=("celeba 1"); STEPS=2; REF_STEPS=2; CAP=$BUDGET
else
    GRID=("celebamhq 1" "celebamhq 8" "celeba 1" "celeba 8" "bdd 1" "bdd 8"); STEPS=8; REF_STEPS=4; CAP=60
fi
for cfg in "${GRID[@]}"; do
    set -- $cfg
    step "ours_${1}_b$2" "$CAP" "$BUNDLE/bin/explain_step" --device wgpu "$1" "$2" fast "$STEPS"
    step "reference_${1}_b$2" "$CAP" "$PY" tools/bench_reference.py "$1" "$2" "$REF_STEPS" --device cuda
done

# 4. Summary: per preset and batch, ms/step, s per 100-step explanation, ratio.
"$PY" - "$OUT" <<'EOF' | tee "$OUT/summary.json"
import json, os, sys
out = sys.argv[1]
rows = []
if os.path.exists(os.path.join(out, "results.jsonl")):
    rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl")) if l.strip()]
summary = {}
for r in rows:
    key = f"{r['preset']} batch {r['batch']}"
    who = "reference" if r["impl"] == "pytorch-reference" else "ours"
    e = summary.setdefault(key, {})
    e[f"{who}_ms_per_step"] = r["ms_per_step"]
    e[f"{who}_s_per_100_steps_per_image"] = round(r["ms_per_step"] * 100 / 1000 / r["batch"], 3)
    e[f"{who}_gpu_mem_used_mib"] = r.get("gpu_mem_used_mib")
    e[f"{who}_device"] = r.get("device")
    if r.get("device_reserved_gib") is not None:
        e["ours_pool_reserved_gib"] = r["device_reserved_gib"]
for e in summary.values():
    if "ours_ms_per_step" in e and "reference_ms_per_step" in e:
        e["speed_up_vs_published"] = round(e["reference_ms_per_step"] / e["ours_ms_per_step"], 2)
print(json.dumps(summary, indent=1))
EOF
echo "gpu_bench: $(($(date +%s) - T0)) s in all; results in $OUT"
