"""Times our explanation step and the published PyTorch loop in one run on this machine, and
prints a table: ms per optimisation step, ms per step per image, peak memory, the achieved
GFLOP/s of our step and the speed-up, with the CPU model and its SIMD level.

    tools/.venv/bin/python tools/bench.py [--quick] [--device cpu|wgpu|cuda] [--reference-device cpu|cuda] [--repeat N]

--quick times celeba at batch 1 only (ours and the reference). --device chooses our backend
(default cpu; wgpu or cuda builds the bench with that feature); --reference-device the
reference's (default: cuda when --device is a GPU, else cpu). --repeat N times the whole grid N
times, ours and the reference alternating, and reports each row's median run (the runs are
listed under the table and in the JSON lines), for machines whose speed drifts. Each run's
ms/step is the median of its steps after the first (ours: 11 of 12; the published loop: 5 of
6 at celeba, 2 of 3 at celebamhq), so a stray interruption of the machine moves neither side. Results are also written to
target/bench-results.jsonl. The reference is `tools/bench_reference.py`: the published
`generate_counterfactuals.py` loop on modules that compute what the published ones compute.

Our step's FLOPs are counted once, analytically, for the fast path, as direct-convolution
equivalents (Winograd F(2x2, 3x3) does 4/9 of the multiplications on the generator's planes
>= 8x8 and the DenseNet's >= 16x16, so the GFLOP/s column is "direct-equivalent" there): the SEAN trunk's convolutions forward and
backward to their inputs (the mask-only SPADE branch is computed
once per mask, outside the step), the style branch's products (fc_mu and the folded
conv_gamma/conv_beta per label, forward and backward), and the DenseNet's forward counted by
torch's FlopCounterMode, twice for its backward to the image.
"""
import argparse
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

# labels, width, aspect ratio, decision outputs (as bench_reference.py)
PRESETS = {"celeba": (19, 128, 1.0, 3), "celebamhq": (19, 256, 1.0, 3), "bdd": (20, 512, 2.0, 4)}


def cpu():
    """The CPU model and its widest SIMD level, from /proc/cpuinfo."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    model = model or platform.processor() or "unknown CPU"
    if "avx512f" in flags:
        simd = "AVX-512" + (" (AMX present, unused in f32)" if "amx_tile" in flags else "")
    elif "avx2" in flags:
        simd = "AVX2"
    else:
        simd = "no AVX2"
    return model, simd, os.cpu_count()


def generator_flops(preset, batch):
    """FLOPs of one fast-path step of the SEAN generator (forward + backward to the codes)."""
    labels, width, aspect, _ = PRESETS[preset]
    ngf, style = 64, 512
    sw = width // 32
    sh = round(sw / aspect)
    # (fin, fout, scale, has style branch) as SEAN's "normal" generator
    blocks = [(16, 16, 0, True), (16, 16, 1, True), (16, 16, 1, True), (16, 8, 2, True),
              (8, 4, 3, True), (4, 2, 4, True), (2, 1, 5, False)]
    fwd = bwd = 0.0
    hw0 = sh * sw
    fwd += 2 * 9 * labels * 16 * ngf * hw0  # fc on the mask (no gradient needed)
    for fin, fout, k, st in blocks:
        cin, cout, hw = fin * ngf, fout * ngf, hw0 * 4 ** k
        mid = min(cin, cout)
        convs = 2 * 9 * cin * mid * hw + 2 * 9 * mid * cout * hw
        if cin != cout:
            convs += 2 * cin * cout * hw
        fwd += convs
        bwd += convs
        if st:
            chans = [cin, mid] + ([cin] if cin != cout else [])
            for c in chans:
                prod = 2 * (2 * c * 9) * style * labels + 2 * labels * style * style
                fwd += prod
                bwd += prod
    img = 2 * 9 * ngf * 3 * hw0 * 4 ** 5
    fwd += img
    bwd += img
    return batch * (fwd + bwd)


def densenet_flops(preset, batch):
    """FLOPs of the DenseNet121's forward (counted by torch) and backward to the image."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode
    _, width, aspect, k = PRESETS[preset]
    h = round(width / aspect)
    model = torchvision.models.densenet121(num_classes=k).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, h, width))
    return batch * 2 * counter.get_total_flops()


def lines(cmd, env=None):
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="celeba at batch 1 only (ours and the reference)")
    p.add_argument("--device", choices=("cpu", "wgpu", "cuda"), default="cpu", help="our backend (default cpu)")
    p.add_argument("--reference-device", choices=("cpu", "cuda"), default=None,
                   help="the reference's device (default: cuda when --device is a GPU, else cpu)")
    p.add_argument("--repeat", type=int, default=1,
                   help="time the whole grid N times, alternating ours and the reference, and report each "
                        "row's median ms/step (default 1)")
    a = p.parse_args()
    if a.repeat < 1:
        p.error("--repeat must be >= 1")
    if a.reference_device is None:
        a.reference_device = "cpu" if a.device == "cpu" else "cuda"
    return a


def median_rows(runs):
    """One row per (preset, batch, impl, path): the run with the median ms/step, peak RSS the max."""
    groups = {}
    for r in runs:
        groups.setdefault((r["preset"], r["batch"], r["impl"], r["path"]), []).append(r)
    out = []
    for rs in groups.values():
        rs = sorted(rs, key=lambda r: r["ms_per_step"])
        row = dict(rs[(len(rs) - 1) // 2])
        row["peak_rss_gib"] = max(r["peak_rss_gib"] for r in rs)
        row["runs_ms_per_step"] = [round(r["ms_per_step"], 1) for r in runs if r in rs]
        out.append(row)
    return out


def main():
    args = parse_args()
    quick, device, ref_device = args.quick, args.device, args.reference_device
    features = [] if device == "cpu" else ["--features", device]
    model, simd, cores = cpu()
    print(f"machine: {model}, {simd}, {cores} cores", file=sys.stderr, flush=True)
    print("building cargo bench --bench explain_step ...", file=sys.stderr, flush=True)
    ours = [("celeba", 1, "fast")] if quick else [
        ("celeba", 1, "fast"), ("celebamhq", 1, "fast"), ("bdd", 1, "fast"), ("celeba", 8, "fast")]
    subprocess.run(["cargo", "bench", "--quiet", *features, "--bench", "explain_step", "--no-run"], cwd=ROOT,
                   check=True)
    # Steps per run (the first is dropped as warm-up): ours 12; the published loop, at 4-20 s a
    # step, 6 at celeba and 3 at celebamhq. Each run reports its steps' median.
    ref_grid = [("celeba", 1, 6)] + ([] if quick else [("celebamhq", 1, 3)])
    runs = []
    for rep in range(args.repeat):
        tag = f" (run {rep + 1} of {args.repeat})" if args.repeat > 1 else ""
        for preset, batch, path in ours:
            print(f"running ours: {preset} batch {batch}{tag} ...", file=sys.stderr, flush=True)
            runs += lines(["cargo", "bench", "--quiet", *features, "--bench", "explain_step", "--", "--device",
                           device, preset, str(batch), path, "12"])
        for preset, batch, steps in ref_grid:
            print(f"running the PyTorch reference: {preset} batch {batch}{tag} ...", file=sys.stderr, flush=True)
            runs += lines([sys.executable, os.path.join(ROOT, "tools", "bench_reference.py"), preset,
                           str(batch), str(steps), "--device", ref_device])
    rows = median_rows(runs)
    for r in rows:
        r["cpu"], r["simd"] = model, simd
        if r["impl"] != "pytorch-reference" and r["path"] == "fast":
            flops = generator_flops(r["preset"], r["batch"]) + densenet_flops(r["preset"], r["batch"])
            r["gflop_per_step"] = round(flops / 1e9, 1)
            r["gflops"] = round(flops / 1e9 / (r["ms_per_step"] / 1e3), 1)
    os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
    with open(os.path.join(ROOT, "target", "bench-results.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    ref = {(r["preset"], r["batch"]): r for r in rows if r["impl"] == "pytorch-reference"}
    print(f"{model}, {simd}, {cores} cores; torch {next(iter(ref.values()))['torch'] if ref else '-'}")
    print("| preset | batch | implementation | ms/step | ms/step/image | peak RSS GiB | GFLOP/step (direct-equivalent) | GFLOP/s | speed-up vs published loop |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["preset"], r["batch"], r["impl"] != "pytorch-reference")):
        base = ref.get((r["preset"], r["batch"]))
        up = f"{base['ms_per_step'] / r['ms_per_step']:.1f}x" if base and r is not base else ""
        name = "published loop (PyTorch)" if r["impl"] == "pytorch-reference" else f"steex-rs {r['path']}"
        print(f"| {r['preset']} | {r['batch']} | {name} | {r['ms_per_step']:.0f} | "
              f"{r['ms_per_step_per_image']:.0f} | {r['peak_rss_gib']:.2f} | {r.get('gflop_per_step', '')} | "
              f"{r.get('gflops', '')} | {up} |")
    print()
    for r in sorted(rows, key=lambda r: (r["preset"], r["batch"], r["impl"] != "pytorch-reference")):
        name = "published loop" if r["impl"] == "pytorch-reference" else f"steex-rs {r['path']}"
        print(f"runs of {r['preset']} batch {r['batch']} {name}: {r['runs_ms_per_step']} ms/step")


if __name__ == "__main__":
    main()
