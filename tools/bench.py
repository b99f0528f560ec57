"""Runs the Rust benchmark and the PyTorch reference on this machine, one after the other,
and prints a table of ms per optimisation step and peak memory, with the speed-up.

    tools/.venv/bin/python tools/bench.py [--quick]

--quick times the reference on celeba only. Results are also written to
target/bench-results.jsonl.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))


def lines(cmd, env=None):
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def main():
    quick = "--quick" in sys.argv
    print("running cargo bench --bench explain_step ...", file=sys.stderr, flush=True)
    rows = lines(["cargo", "bench", "--quiet", "--bench", "explain_step"])
    ref_grid = [("celeba", 1, 3)] + ([] if quick else [("celebamhq", 1, 2)])
    for preset, batch, steps in ref_grid:
        print(f"running the PyTorch reference: {preset} batch {batch} ...", file=sys.stderr, flush=True)
        rows += lines([sys.executable, os.path.join(ROOT, "tools", "bench_reference.py"), preset,
                       str(batch), str(steps)])
    os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
    with open(os.path.join(ROOT, "target", "bench-results.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    ref = {(r["preset"], r["batch"]): r for r in rows if r["impl"] == "pytorch-reference"}
    print(f"| preset | batch | implementation | ms/step | ms/step/image | peak RSS GiB | speed-up vs reference |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["preset"], r["batch"], r["impl"], r["path"])):
        base = ref.get((r["preset"], r["batch"]))
        up = f"{base['ms_per_step'] / r['ms_per_step']:.1f}x" if base and r is not base else ""
        name = "PyTorch reference" if r["impl"] == "pytorch-reference" else f"steex-rs {r['path']}"
        print(f"| {r['preset']} | {r['batch']} | {name} | {r['ms_per_step']:.0f} | "
              f"{r['ms_per_step_per_image']:.0f} | {r['peak_rss_gib']:.2f} | {up} |")


if __name__ == "__main__":
    main()
