#!/usr/bin/env python3
"""Lathe side by side with onnxruntime and TensorFlow on the benchmark models, same machine, one run.

Usage: python compare.py MODELDIR [name ...] [--lathe PATH] [--backend cpu|interp]
                         [--anchors PATH] [--iterations N] [--json]

MODELDIR is what ../shared/bench/make_models.py wrote (NAME/frozen.pb, input.npy, output.npy,
model.onnx, saved_model/). For each model this runs `lathe bench ... --json` for Lathe's latency,
`lathe run --output-dir` once to check Lathe's answer against output.npy, and onnxruntime and
TensorFlow through anchors.py's own `ort` and `tf_graph`, so every runtime is timed the same
way. A runtime that is not installed is skipped with a note. Prints a table (or, with --json, one
JSON object) with the ratios lathe/ort and lathe/tf and their geometric means. Speed is only
measured here, never asserted.
"""
import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:
    import numpy as np
except ImportError:
    sys.exit(f"error: compare.py needs numpy; run it with the benchmark venv's python "
             f"(e.g. /tmp/tfenv/bin/python), not {sys.executable}")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODELS = ["mlp", "cnn", "mobilenet_v2", "resnet50", "encoder", "gelu_chain"]
DEFAULT_ANCHORS = os.path.join(REPO, "..", "shared", "bench", "anchors.py")
DEFAULT_LATHE = os.path.join(REPO, "target", "release", "lathe")
# Lathe's output must be within RTOL * max(1, max|expected|) of TensorFlow's, element by element.
RTOL = 1e-4


def note(msg):
    print(f"note: {msg}", file=sys.stderr, flush=True)


def load_anchors(path):
    """anchors.py as a module (its `ort`, `tf_graph` and `timeit`)."""
    if not os.path.isfile(path):
        sys.exit(f"error: anchors.py not found at {path} (pass --anchors PATH)")
    spec = importlib.util.spec_from_file_location("anchors", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


def lathe_bench(lathe, d, backend, iterations):
    cmd = [lathe, "bench", os.path.join(d, "frozen.pb"), "--input", os.path.join(d, "input.npy"),
           "--backend", backend, "--json"]
    if iterations:
        cmd += ["--iterations", str(iterations)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip() or f"lathe bench exited {p.returncode}")
    return json.loads(p.stdout)


def lathe_check(lathe, d, backend, ref):
    """Runs `lathe run` once and compares its (single) output with output.npy."""
    with tempfile.TemporaryDirectory(prefix="lathe-compare-") as out:
        cmd = [lathe, "run", os.path.join(d, "frozen.pb"), "--input", os.path.join(d, "input.npy"),
               "--backend", backend, "--output-dir", out]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip() or f"lathe run exited {p.returncode}")
        files = sorted(f for f in os.listdir(out) if f.endswith(".npy"))
        if len(files) != 1:
            raise RuntimeError(f"expected one output, lathe wrote {files}")
        y = np.load(os.path.join(out, files[0]))
    if y.shape != ref.shape:
        return dict(ok=False, max_abs_err=None, tol=None,
                    detail=f"shape {list(y.shape)}, expected {list(ref.shape)}")
    err = float(np.max(np.abs(y.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
    tol = RTOL * max(1.0, float(np.max(np.abs(ref))) if ref.size else 0.0)
    return dict(ok=bool(err <= tol), max_abs_err=err, tol=tol)


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, digits=3):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modeldir")
    ap.add_argument("names", nargs="*", help=f"models (default: {' '.join(DEFAULT_MODELS)})")
    ap.add_argument("--lathe", default=DEFAULT_LATHE, help="the lathe binary (default: %(default)s)")
    ap.add_argument("--backend", default="cpu", choices=["interp", "cpu"])
    ap.add_argument("--anchors", default=DEFAULT_ANCHORS, help="anchors.py (default: %(default)s)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="lathe's timed runs (default: at least 20 and at least 3 s, like anchors.py)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = ap.parse_args()

    if not os.access(a.lathe, os.X_OK):
        sys.exit(f"error: no lathe binary at {a.lathe} (build it: cargo build --release -p lathe-cli, "
                 "or pass --lathe PATH)")
    anchors = load_anchors(a.anchors)
    others = []
    for name, module, fn in [("ort", "onnxruntime", anchors.ort), ("tf", "tensorflow", anchors.tf_graph)]:
        if installed(module):
            others.append((name, fn))
        else:
            note(f"{module} is not installed: skipping it")

    load_before = os.getloadavg()
    rows = []
    for n in a.names or DEFAULT_MODELS:
        d = os.path.join(a.modeldir, n)
        row = dict(model=n)
        rows.append(row)
        try:
            x = np.load(os.path.join(d, "input.npy"))
            ref = np.load(os.path.join(d, "output.npy"))
        except OSError as e:
            note(f"{n}: {e}")
            row["error"] = str(e)
            continue
        try:
            row["check"] = lathe_check(a.lathe, d, a.backend, ref)
            b = lathe_bench(a.lathe, d, a.backend, a.iterations)
            row["lathe"] = {k: b[k] for k in ("median_ms", "p10_ms", "p90_ms", "compile_ms", "runs")}
        except RuntimeError as e:
            note(f"{n}: lathe: {e}")
            row["lathe"] = dict(error=str(e))
        for name, fn in others:
            try:
                row[name] = fn(d, x, ref)
            except Exception as e:  # a runtime failing on one model must not stop the others
                note(f"{n}: {name}: {e!r}"[:300])
                row[name] = dict(error=repr(e)[:200])
        lat = row["lathe"].get("median_ms")
        for name, _ in others:
            row[f"lathe/{name}"] = ratio(lat, row[name].get("median_ms"))
        if not a.json:
            print(f"# {n}: lathe {fmt(lat)} ms" + "".join(
                f", {name} {fmt(row[name].get('median_ms'))} ms" for name, _ in others),
                file=sys.stderr, flush=True)

    load_after = os.getloadavg()
    summary = {f"geomean_lathe/{name}": geomean([r.get(f"lathe/{name}") for r in rows])
               for name, _ in others}
    if a.json:
        print(json.dumps(dict(backend=a.backend, cpus=os.cpu_count(), load_before=load_before,
                              load_after=load_after, models=rows, **summary)))
        return

    header = ["model", "lathe ms", "ort ms", "tf ms", "lathe/ort", "lathe/tf", "compile ms", "check"]
    table = []
    for r in rows:
        c = r.get("check")
        check = "-" if c is None else ("OK" if c["ok"] else "FAIL") + (
            f" ({c['max_abs_err']:.1e})" if c.get("max_abs_err") is not None else f" ({c.get('detail')})")
        lat = r.get("lathe", {})
        table.append([r["model"], fmt(lat.get("median_ms")), fmt(r.get("ort", {}).get("median_ms")),
                      fmt(r.get("tf", {}).get("median_ms")), fmt(r.get("lathe/ort"), 1),
                      fmt(r.get("lathe/tf"), 1), fmt(lat.get("compile_ms")), check])
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print(f"lathe backend {a.backend}; {os.cpu_count()} cpus; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print("median ms per run, batch 1; lathe/x > 1 means lathe is slower")
    print(line(header))
    print(line(["-" * w for w in widths]))
    for t in table:
        print(line(t))
    for name, _ in others:
        print(f"geometric mean lathe/{name}: {fmt(summary[f'geomean_lathe/{name}'], 1)}")


if __name__ == "__main__":
    main()
