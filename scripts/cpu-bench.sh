#!/usr/bin/env bash
# CPU benchmark: candle (`unisal bench train|infer`) against PyTorch (`scripts/torch_bench.py`), the same model,
# batch, size, steps and warm-up, run alternately (candle, then PyTorch) for each case, with the load average and the
# other processes' CPU use recorded around every run. Writes results/cpu-bench/<UTC date>-<HHMM>.json (an array, one
# object per case, rewritten after every case so that a cut-off run keeps what it measured) and prints a markdown
# table. `--table FILE...` instead prints one table over several such files (see below).
#
#   CARGO_TARGET_DIR=/work/target-train cargo build --release -p unisal-cli
#   UNISAL_BIN=/work/target-train/release/unisal UNISAL_BIN_COMMIT=$(git rev-parse --short HEAD) \
#     PYTHON=/work/venv-torch/bin/python LOAD_MAX=0.3 LOAD_WAIT=120 RETRY_BUSY=0.3 TRIES=3 bash scripts/cpu-bench.sh
#   bash scripts/cpu-bench.sh --table results/cpu-bench/<pass>.json ...
#
# Environment: UNISAL_BIN (default ${CARGO_TARGET_DIR:-target}/release/unisal), PYTHON (a Python with torch; default
# python3), THREADS (default `nproc`), WARMUP (untimed steps, default 1), STEPS_SMALL / STEPS_BIG (timed steps for the
# small CNN / the ResNets, default 5 / 3), CASES (a regular expression over case names to run a subset), TIMEOUT
# (seconds a run may take, default 3600), LOAD_MAX / LOAD_WAIT / RETRY_BUSY / TRIES (see one_run below), OUTFILE.
#
# Threads: candle's CPU backend (its rayon pool, the gemm crate's matmul, im2col) reads RAYON_NUM_THREADS
# (candle_core::utils::get_num_threads; default: the physical cores); PyTorch's ATen/OpenMP/MKL read OMP_NUM_THREADS
# and MKL_NUM_THREADS (default: the physical cores). All three are set to THREADS, so both use the same number.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
BIN="${UNISAL_BIN:-${CARGO_TARGET_DIR:-target}/release/unisal}"
PY="${PYTHON:-python3}"
# `bash scripts/cpu-bench.sh --table FILE...`: one table over several passes (median img/s with the range, median of
# the per-pass ratios, highest peak RSS, number of passes); measures nothing.
if [ "${1:-}" = "--table" ]; then
  shift
  exec "$PY" - "$@" <<'PYEOF'
import json, sys, statistics as st
files = sys.argv[1:]
cases = {}; order = []; unknown = False
for fn in files:
    for r in json.load(open(fn)):
        k = r['case']
        if k not in cases: cases[k] = []; order.append(k)
        cases[k].append((fn, r))
def fmt(v):
    return f"{v:,.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")
print("| case | candle img/s | PyTorch img/s | ratio | peak RSS MB candle / PyTorch | n |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
mx = 0
for k in order:
    rs = [r for _, r in cases[k]]
    r0 = rs[0]
    c = [r['candle']['result']['img_per_s'] for r in rs]
    t = [r['torch']['result']['img_per_s'] for r in rs]
    ratio = [a / b for a, b in zip(c, t)]
    rc = max(r['candle']['result']['peak_rss_mb'] for r in rs); rt = max(r['torch']['result']['peak_rss_mb'] for r in rs)
    od = [r[x].get('others_cores_during') for r in rs for x in ('candle', 'torch')]
    unknown = unknown or None in od
    mx = max([mx] + [v for v in od if v is not None])
    what = {"small": "small CNN", "resnet18": "ResNet-18", "resnet50": "ResNet-50"}[r0['model']]
    what = f"{'two ' + what + 's' if r0['dual'] else what} {r0['size']} px, batch {r0['batch']}{' (dual)' if r0['dual'] else ''}, {'train' if r0['mode']=='train' else 'inference'}"
    rng = lambda v: f"{fmt(st.median(v))} ({fmt(min(v))}-{fmt(max(v))})" if len(v) > 1 else fmt(v[0])
    rrng = f"{st.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})" if len(ratio) > 1 else f"{ratio[0]:.2f}"
    print(f"| {what} | {rng(c)} | {rng(t)} | {rrng} | {rc:,.0f} / {rt:,.0f} | {len(rs)} |")
print(f"\nother processes used at most {mx:.2f} core during any of these runs"
      + (" (not recorded for some: files older than that measure)" if unknown else ""), file=sys.stderr)
PYEOF
fi
THREADS="${THREADS:-$(nproc)}"
WARMUP="${WARMUP:-1}"
STEPS_SMALL="${STEPS_SMALL:-5}"
STEPS_BIG="${STEPS_BIG:-3}"
CASES="${CASES:-.}"
TIMEOUT="${TIMEOUT:-3600}"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
OUTFILE="${OUTFILE:-results/cpu-bench/$(date -u +%F-%H%M).json}"
mkdir -p "$(dirname "$OUTFILE")"
[ -x "$BIN" ] || { echo "no unisal binary at $BIN (build it, or set UNISAL_BIN)" >&2; exit 2; }
"$PY" -c 'import torch' || { echo "$PY has no torch (set PYTHON)" >&2; exit 2; }

tmp="$(mktemp -d)"
lines="$tmp/cases.jsonl"
trap 'rm -rf "$tmp"' EXIT

# Facts about the machine and the code, stored with every case.
# HEAD at run time is not necessarily what the binary was built from: set UNISAL_BIN_COMMIT to the commit it was
# built at (`git rev-parse --short HEAD` right after the build); the binary's SHA-256 and mtime are stored too.
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
bin_commit="${UNISAL_BIN_COMMIT:-unknown}"
bin_sha="$(sha256sum "$BIN" | cut -c1-16)"
bin_mtime="$(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ)"
# Uncommitted changes under the engine's crates at the time of the run (the binary may include them).
engine_dirty="$(git status --porcelain -- crates/unisal-train crates/unisal-cli 2>/dev/null | awk '{print $2}' | paste -sd, -)"
cpu_model="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
mem_gib="$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)"
torch_version="$("$PY" -c 'import torch; print(torch.__version__)')"

# One run, through a small Python runner: prints one JSON object with the tool's JSON (`result`, null when it printed
# none), its exit status and wall time, the 1-min load average before and after, and how many cores *other* processes
# kept busy: `others_cores_before` over a 5 s window just before the run (nothing of ours running), and
# `others_cores_during` = (machine busy CPU time over the run, from /proc/stat, minus the benchmark's own user+system
# CPU time) / wall time. The load average also counts our own previous run (a 2-thread benchmark alone holds it near
# 2), so `others_cores_*` is the better measure of interference. With LOAD_MAX set (cores), each run first waits, up
# to LOAD_WAIT seconds (default 600), for a 5 s window in which others use less than LOAD_MAX cores; with RETRY_BUSY
# set (cores), a run during which others used more is repeated, up to TRIES attempts, and the quietest is reported.
runner="$tmp/run.py"
cat > "$runner" <<'PYEOF'
import json, os, resource, subprocess, sys, time
ncpu = os.cpu_count()
tck = os.sysconf("SC_CLK_TCK")
def stat():
    v = list(map(int, open("/proc/stat").readline().split()[1:9]))
    return sum(v) - v[3] - v[4], sum(v)  # busy, total ticks (all cpus)
def others_now(window=5.0):
    b0, t0 = stat(); time.sleep(window); b1, t1 = stat()
    return ncpu * (b1 - b0) / max(t1 - t0, 1)
load_max = float(os.environ.get("LOAD_MAX") or "inf")
retry_busy = float(os.environ.get("RETRY_BUSY") or "inf")
tries = max(int(os.environ.get("TRIES") or 1), 1)

def attempt():
    deadline = time.time() + float(os.environ.get("LOAD_WAIT") or 600)
    others_before = others_now()
    waited = 0.0
    while others_before >= load_max and time.time() < deadline:
        waited += 5.0
        others_before = others_now()
    la0 = open("/proc/loadavg").read().strip()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0, _ = stat()
    t0 = time.perf_counter()
    try:
        p = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, text=True, timeout=float(sys.argv[1]))
        rc, out = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, out = 124, (e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout) or ""
    wall = time.perf_counter() - t0
    b1, _ = stat()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = None
    return {
        "loadavg_before": la0, "loadavg_after": open("/proc/loadavg").read().strip(),
        "others_cores_before": round(others_before, 2), "waited_for_quiet_s": waited,
        "others_cores_during": round(max((b1 - b0) / tck - own, 0.0) / wall, 2),
        "own_cpu_s": round(own, 1), "wall_s": round(wall, 1), "rc": rc, "result": res}

# With RETRY_BUSY set (cores), a run during which others used more than that is repeated, up to TRIES attempts in
# all; the attempt with the least interference (among those that printed a result) is the one reported, and every
# attempt is kept under "attempts".
runs = []
for _ in range(tries):
    runs.append(attempt())
    if runs[-1]["result"] is not None and runs[-1]["others_cores_during"] <= retry_busy:
        break
ok = [r for r in runs if r["result"] is not None] or runs
best = dict(min(ok, key=lambda r: r["others_cores_during"]))
best["attempts"] = [{k: (r["result"] or {}).get("img_per_s") if k == "img_per_s" else r[k]
                     for k in ("img_per_s", "others_cores_before", "others_cores_during", "loadavg_before", "wall_s", "rc")}
                    for r in runs]
print(json.dumps(best))
PYEOF
one_run() {
  "$PY" "$runner" "$TIMEOUT" "$@"
}

# name mode model size batch dual(0|1) steps
run_case() {
  local name="$1" mode="$2" model="$3" size="$4" batch="$5" dual="$6" steps="$7"
  [[ "$name" =~ $CASES ]] || return 0
  local args=("$mode" --device cpu --model "$model" --size "$size" --batch "$batch" --steps "$steps" --warmup "$WARMUP" --json)
  [ "$dual" = 1 ] && args+=(--dual)
  echo "== $name: ${args[*]} (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  local c t
  c="$(one_run "$BIN" bench "${args[@]}")"
  echo "   candle:  $c" >&2
  t="$(one_run "$PY" scripts/torch_bench.py "${args[@]}")"
  echo "   pytorch: $t" >&2
  "$PY" - "$name" "$mode" "$model" "$size" "$batch" "$dual" "$steps" "$WARMUP" "$THREADS" "$commit" "$engine_dirty" \
      "$cpu_model" "$(nproc)" "$mem_gib" "$torch_version" "$bin_commit" "$bin_sha" "$bin_mtime" "$c" "$t" >> "$lines" <<'PYEOF'
import datetime, json, sys
(name, mode, model, size, batch, dual, steps, warmup, threads, commit, dirty, cpu, nproc, mem, tv,
 bin_commit, bin_sha, bin_mtime, c, t) = sys.argv[1:]
c, t = json.loads(c), json.loads(t)
ci = (c["result"] or {}).get("img_per_s")
ti = (t["result"] or {}).get("img_per_s")
print(json.dumps({
    "case": name, "mode": mode, "model": model, "size": int(size), "batch": int(batch), "dual": dual == "1",
    "steps": int(steps), "warmup": int(warmup), "threads": int(threads),
    "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "machine": {"cpu": cpu, "nproc": int(nproc), "mem_gib": float(mem)},
    "binary": {"built_from": bin_commit, "sha256_16": bin_sha, "mtime_utc": bin_mtime},
    "checkout_head_at_run": commit, "engine_uncommitted_changes_at_run": [p for p in dirty.split(",") if p],
    "torch_version": tv,
    "candle": c, "torch": t, "ratio": ci / ti if ci and ti else None,
}))
PYEOF
  "$PY" -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1]) if l.strip()], indent=1))' \
    "$lines" > "$OUTFILE"
}

S="$STEPS_SMALL" B="$STEPS_BIG"
run_case small64-train      train small    64  32 0 "$S"
run_case small64-infer      infer small    64  32 0 "$S"
run_case small64-dual-train train small    64  32 1 "$S"
run_case small96-train      train small    96  32 0 "$S"
run_case small96-infer      infer small    96  32 0 "$S"
run_case r18-112-train      train resnet18 112 16 0 "$B"
run_case r18-112-infer      infer resnet18 112 16 0 "$B"
run_case r18-112-dual-train train resnet18 112 16 1 "$B"
run_case r18-224-train      train resnet18 224 8  0 "$B"
run_case r18-224-infer      infer resnet18 224 8  0 "$B"
run_case r50-224-train      train resnet50 224 4  0 "$B"
run_case r50-224-infer      infer resnet50 224 4  0 "$B"

echo "wrote $OUTFILE" >&2
"$PY" - "$OUTFILE" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1]))
def f(v, d=1):
    return "n/a" if v is None else f"{v:,.{d}f}"
def load(run):
    return run["loadavg_before"].split()[0]
def others(run):
    v = run.get("others_cores_during")
    return "n/a" if v is None else f"{v:.2f}"
print("| case | candle img/s | PyTorch img/s | ratio | peak RSS MB candle / PyTorch "
      "| load avg before, candle / PyTorch | others' cores during, candle / PyTorch |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    c, t = r["candle"]["result"] or {}, r["torch"]["result"] or {}
    what = f"{r['model']} {r['size']} px, batch {r['batch']}{', dual' if r['dual'] else ''}, {r['mode']}"
    print(f"| {what} | {f(c.get('img_per_s'), 2)} | {f(t.get('img_per_s'), 2)} | {f(r['ratio'], 2)} | "
          f"{f(c.get('peak_rss_mb'), 0)} / {f(t.get('peak_rss_mb'), 0)} | {load(r['candle'])} / {load(r['torch'])} "
          f"| {others(r['candle'])} / {others(r['torch'])} |")
PYEOF
