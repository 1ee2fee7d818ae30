#!/usr/bin/env python3
"""Lathe side by side with onnxruntime and TensorFlow on the benchmark models, interleaved in rounds.

Usage: python benches/compare.py MODELDIR [name ...] [--rounds N] [--only RUNTIME ...]
                                 [--lathe PATH] [--backend cpu|interp] [--seconds S] [--onnx] [--json]

MODELDIR is what benches/make_models.py wrote (NAME/frozen.pb, model.onnx, saved_model/, input.npy,
output.npy). For each model, each runtime loads the model once; then every round times Lathe, then
onnxruntime, then TensorFlow, one after the other, so the three see the same machine noise (a build
starting halfway through slows all three, not one). A round times one runtime for at least
--seconds (and at least 10 runs) and takes the median of those runs. The result per runtime is the
median of its round medians, with the spread across rounds (slowest round median minus fastest, as
a percentage of the result). Lathe runs as `lathe bench --json --iterations N` (N chosen from a
first calibration call so that a round lasts about --seconds; the time to start the process and
compile is not in the median); onnxruntime and TensorFlow (the SavedModel's serving_default
signature, graph mode) are timed in this process with the same clock.

Before timing, `lathe run` checks Lathe's answer against output.npy (TensorFlow's answer), and
onnxruntime's answer is checked the same way. Prints a table (or, with --json, one JSON object)
with the ratios lathe/ort and lathe/tf, and the geometric mean of each ratio over the models. With
--onnx, Lathe also runs each model.onnx in the same rounds, and onnx/frozen compares the two imports. Speed
is only measured here, never asserted. A runtime that is not installed is skipped with a note.
LATHE_ISA=avx2 in the environment times Lathe's AVX2 kernels (onnxruntime keeps its widest).
"""
import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:
    import numpy as np
except ImportError:
    sys.exit(f"error: compare.py needs numpy; run it with the benchmark venv's python "
             f"(e.g. /tmp/tfenv/bin/python), not {sys.executable}")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODELS = ["mlp", "cnn", "mobilenet_v2", "resnet50", "encoder", "gelu_chain", "densenet",
                  "text_classifier"]
DEFAULT_LATHE = os.path.join(REPO, "target", "release", "lathe")
RUNTIMES = ["lathe", "ort", "tf"]
# With --onnx, Lathe also runs each model's model.onnx, timed in the same rounds as its frozen.pb.
LATHE_ONNX = "lathe-onnx"
# An answer must be within RTOL * max(1, max|expected|) of TensorFlow's, element by element.
RTOL = 1e-4
MIN_RUNS = 10
WARMUP = 3


def note(msg):
    print(f"note: {msg}", file=sys.stderr, flush=True)


def installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


def check(y, ref):
    """Whether `y` is TensorFlow's answer `ref`, within RTOL * max(1, max|ref|)."""
    if y.shape != ref.shape:
        return dict(ok=False, max_abs_err=None, detail=f"shape {list(y.shape)}, expected {list(ref.shape)}")
    err = float(np.max(np.abs(y.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
    tol = RTOL * max(1.0, float(np.max(np.abs(ref))) if ref.size else 0.0)
    return dict(ok=bool(err <= tol), max_abs_err=err)


def time_one_round(f, seconds):
    """One round: warm-up, then at least MIN_RUNS calls and `seconds`; the median call in ms."""
    for _ in range(WARMUP):
        f()
    times = []
    start = time.perf_counter()
    while len(times) < MIN_RUNS or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


class Lathe:
    """`lathe bench` as a subprocess; each round is one call with a fixed iteration count."""

    def __init__(self, exe, d, backend, ref, model_file="frozen.pb"):
        self.name = "lathe" if model_file == "frozen.pb" else LATHE_ONNX
        self.cmd = [exe, "bench", os.path.join(d, model_file), "--input", os.path.join(d, "input.npy"),
                    "--backend", backend, "--warmup", str(WARMUP), "--json"]
        self.iterations = None
        self.compile_ms = None
        with tempfile.TemporaryDirectory(prefix="lathe-compare-") as out:
            run = [exe, "run", os.path.join(d, model_file), "--input", os.path.join(d, "input.npy"),
                   "--backend", backend, "--output-dir", out]
            p = subprocess.run(run, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(p.stderr.strip() or f"lathe run exited {p.returncode}")
            files = sorted(f for f in os.listdir(out) if f.endswith(".npy"))
            if len(files) != 1:
                raise RuntimeError(f"expected one output, lathe wrote {files}")
            self.check = check(np.load(os.path.join(out, files[0])), ref)

    def bench(self, iterations):
        p = subprocess.run(self.cmd + ["--iterations", str(iterations)], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip() or f"lathe bench exited {p.returncode}")
        return json.loads(p.stdout)

    def round(self, seconds):
        if self.iterations is None:  # calibrate: how many runs make a round of `seconds`
            first = self.bench(MIN_RUNS)
            self.iterations = max(MIN_RUNS, min(2000, int(seconds * 1e3 / max(first["median_ms"], 1e-3))))
        b = self.bench(self.iterations)
        self.compile_ms = b["compile_ms"]
        return b["median_ms"]


class OnnxRuntime:
    """onnxruntime's CPU execution provider on model.onnx, one thread per core."""

    name = "ort"

    def __init__(self, d, x, ref):
        import onnxruntime as rt
        so = rt.SessionOptions()
        so.intra_op_num_threads = os.cpu_count()
        self.session = rt.InferenceSession(os.path.join(d, "model.onnx"), so,
                                           providers=["CPUExecutionProvider"])
        self.feed = {self.session.get_inputs()[0].name: x}
        self.check = check(self.session.run(None, self.feed)[0], ref)

    def round(self, seconds):
        return time_one_round(lambda: self.session.run(None, self.feed), seconds)


class TensorFlow:
    """TensorFlow on the SavedModel's serving_default signature (graph mode, Grappler on)."""

    name = "tf"

    def __init__(self, d, x, ref):
        import tensorflow as tf
        self.signature = tf.saved_model.load(os.path.join(d, "saved_model")).signatures["serving_default"]
        self.x = tf.constant(x)
        self.check = check(self.call(), ref)

    def call(self):
        return self.signature(x=self.x)["y"].numpy()

    def round(self, seconds):
        return time_one_round(self.call, seconds)


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


def compare_model(d, runtimes, a):
    """Loads `d` in every runtime, then times them interleaved for a.rounds rounds."""
    x = np.load(os.path.join(d, "input.npy"))
    ref = np.load(os.path.join(d, "output.npy"))
    row = {}
    loaded = []
    for name in runtimes:
        try:
            if name == "lathe":
                rt = Lathe(a.lathe, d, a.backend, ref)
            elif name == LATHE_ONNX:
                rt = Lathe(a.lathe, d, a.backend, ref, "model.onnx")
            elif name == "ort":
                rt = OnnxRuntime(d, x, ref)
            else:
                rt = TensorFlow(d, x, ref)
            row[name] = dict(check=rt.check, rounds_ms=[])
            loaded.append(rt)
        except Exception as e:  # one runtime failing on one model must not stop the others
            note(f"{os.path.basename(d)}: {name}: {e}"[:400])
            row[name] = dict(error=str(e)[:300])
    for _ in range(a.rounds):
        for rt in loaded:
            if "error" in row[rt.name]:
                continue
            try:
                row[rt.name]["rounds_ms"].append(rt.round(a.seconds))
            except Exception as e:
                note(f"{os.path.basename(d)}: {rt.name}: {e}"[:400])
                row[rt.name]["error"] = str(e)[:300]
    for rt in loaded:
        r = row[rt.name]
        if r["rounds_ms"] and "error" not in r:
            med = statistics.median(r["rounds_ms"])
            r["median_ms"] = med
            r["spread_pct"] = 100 * (max(r["rounds_ms"]) - min(r["rounds_ms"])) / med
        if rt.name in ("lathe", LATHE_ONNX):
            r["compile_ms"] = rt.compile_ms
    lathe_ms = row.get("lathe", {}).get("median_ms")
    for other in ("ort", "tf"):
        if other in row and "lathe" in row:
            row[f"lathe/{other}"] = ratio(lathe_ms, row[other].get("median_ms"))
    if LATHE_ONNX in row and "lathe" in row:
        row["onnx/frozen"] = ratio(row[LATHE_ONNX].get("median_ms"), lathe_ms)
    return row


def print_table(a, result):
    onnx = a.onnx
    shown = ["lathe"] + ([LATHE_ONNX] if onnx else []) + ["ort", "tf"]
    header = (["model", "lathe ms"] + (["onnx ms"] if onnx else []) + ["ort ms", "tf ms", "lathe/ort", "lathe/tf"]
              + (["onnx/frozen"] if onnx else []) + ["spread % " + "/".join(shown), "compile ms",
                                                     "check " + " / ".join(shown[:-1])])

    def spread(r):
        s = r.get("spread_pct")
        return "-" if s is None else f"{s:.0f}"

    def chk(r):
        c = r.get("check")
        if c is None:
            return "-"
        err = f" ({c['max_abs_err']:.1e})" if c.get("max_abs_err") is not None else f" ({c.get('detail')})"
        return ("OK" if c["ok"] else "FAIL") + err

    table = []
    for name, row in result["models"].items():
        get = lambda rt: row.get(rt, {})
        table.append([name, fmt(get("lathe").get("median_ms"))]
                     + ([fmt(get(LATHE_ONNX).get("median_ms"))] if onnx else [])
                     + [fmt(get("ort").get("median_ms")), fmt(get("tf").get("median_ms")),
                        fmt(row.get("lathe/ort"), 2), fmt(row.get("lathe/tf"), 2)]
                     + ([fmt(row.get("onnx/frozen"), 2)] if onnx else [])
                     + ["/".join(spread(get(rt)) for rt in shown), fmt(get("lathe").get("compile_ms")),
                        " / ".join(chk(get(rt)) for rt in shown[:-1] if rt in row)])
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    left = (0, len(header) - 3, len(header) - 1)
    line = lambda cells: "  ".join(c.ljust(w) if i in left else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    lb, la = result["load_before"], result["load_after"]
    print(f"lathe backend {a.backend}; {result['cpus']} cpus; {a.rounds} interleaved rounds of >= {a.seconds} s "
          f"per runtime; load average {lb[0]:.2f} before, {la[0]:.2f} after")
    print("median of round medians, ms per batch-1 run; lathe/x > 1 means lathe is slower; spread is "
          "(slowest round - fastest round) / median")
    print(line(header))
    print(line(["-" * w for w in widths]))
    for t in table:
        print(line(t))
    for other in ("ort", "tf"):
        g = result.get(f"geomean_lathe/{other}")
        if g is not None:
            print(f"geometric mean lathe/{other}: {g:.2f}")
    g = result.get("geomean_onnx/frozen")
    if g is not None:
        print(f"geometric mean onnx/frozen (Lathe on model.onnx over Lathe on frozen.pb): {g:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modeldir")
    ap.add_argument("names", nargs="*", help=f"models (default: {' '.join(DEFAULT_MODELS)})")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=1.0,
                    help="least time one runtime is timed per round (default: %(default)s)")
    ap.add_argument("--only", action="append", choices=RUNTIMES,
                    help="time only this runtime (repeatable; default: all three)")
    ap.add_argument("--lathe", default=DEFAULT_LATHE, help="the lathe binary (default: %(default)s)")
    ap.add_argument("--backend", default="cpu", choices=["interp", "cpu"])
    ap.add_argument("--onnx", action="store_true",
                    help="also time Lathe on model.onnx, in the same rounds, and report onnx/frozen")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = ap.parse_args()
    if a.rounds < 1:
        sys.exit("error: --rounds must be at least 1")

    runtimes = list(a.only or RUNTIMES)
    if a.onnx:
        runtimes.insert(runtimes.index("lathe") + 1 if "lathe" in runtimes else 0, LATHE_ONNX)
    if "lathe" in runtimes and not os.access(a.lathe, os.X_OK):
        sys.exit(f"error: no lathe binary at {a.lathe} (build it: cargo build --release -p lathe-cli, "
                 "or pass --lathe PATH)")
    for name, module in [("ort", "onnxruntime"), ("tf", "tensorflow")]:
        if name in runtimes and not installed(module):
            note(f"{module} is not installed: skipping it")
            runtimes = [r for r in runtimes if r != name]

    names = a.names or DEFAULT_MODELS
    missing = [n for n in names if not os.path.isdir(os.path.join(a.modeldir, n))]
    if missing:
        sys.exit(f"error: no model directory for {missing} in {a.modeldir} "
                 f"(make them: python benches/make_models.py {a.modeldir})")

    load_before = os.getloadavg()
    models = {}
    for n in names:
        models[n] = row = compare_model(os.path.join(a.modeldir, n), runtimes, a)
        if not a.json:
            print(f"# {n}: " + ", ".join(f"{rt} {fmt(row.get(rt, {}).get('median_ms'))} ms" for rt in runtimes),
                  file=sys.stderr, flush=True)
    result = dict(backend=a.backend, cpus=os.cpu_count(), rounds=a.rounds, seconds=a.seconds,
                  load_before=load_before, load_after=os.getloadavg(), models=models)
    for other in ("ort", "tf"):
        if other in runtimes and "lathe" in runtimes:
            result[f"geomean_lathe/{other}"] = geomean([r.get(f"lathe/{other}") for r in models.values()])
    if a.onnx and "lathe" in runtimes:
        result["geomean_onnx/frozen"] = geomean([r.get("onnx/frozen") for r in models.values()])
    if a.json:
        print(json.dumps(result))
    else:
        print_table(a, result)


if __name__ == "__main__":
    main()
