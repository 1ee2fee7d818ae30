#!/usr/bin/env python3
"""A bounded load test of `lathe serve` with autocannon (an HTTP load tool from npm).

16 concurrent clients call TensorFlow Serving's REST Predict on a model with a batch dimension
for a bounded time, with dynamic batching on; half way through, a new version of the model is
renamed into its base path. Checks: no request fails (no connection error, no non-2xx status),
the new version is picked up and the old one unloaded, and resident memory is flat (the last
third of the run holds no more than the first third plus a margin). Prints the throughput and
latency figures, then `N passed, N failed`.

    python serve/tests/load.py --lathe target/debug/lathe --autocannon PATH/autocannon [--seconds 30]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tf", "dynamic_batch", "model.pb")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def get(url):
    with urllib.request.urlopen(url) as r:
        return r.status, json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--autocannon", required=True)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="lathe-serve-load-")
    base = os.path.join(work, "m")
    os.makedirs(os.path.join(base, "1"))
    shutil.copy(FIXTURE, os.path.join(base, "1", "model.pb"))
    proc = subprocess.Popen(
        [args.lathe, "serve", "--model_name", "m", "--model_base_path", base, "--port", "0",
         "--rest_api_port", "0", "--host", "127.0.0.1", "--enable_batching", "--max_batch_size", "16",
         "--batch_timeout_micros", "500", "--threads", "1"],
        stderr=subprocess.PIPE, text=True,
    )
    m = re.search(r"REST on ([\d.:]+)", proc.stderr.readline())
    if not m:
        proc.kill()
        sys.exit("lathe serve did not start")
    rest = m.group(1)
    # Keep reading the server's log so it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    for _ in range(600):
        try:
            if get(f"http://{rest}/v2/health/ready")[0] == 200:
                break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    body = json.dumps({"instances": [[0.5, -1.0, 2.0, 0.25, -0.75, 1.5]]})
    # Warm up, so the first third of the memory samples is the steady state.
    req = urllib.request.Request(f"http://{rest}/v1/models/m:predict", data=body.encode(), method="POST")
    for _ in range(200):
        urllib.request.urlopen(req).read()

    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_kib(proc.pid))
            time.sleep(0.25)

    def new_version():
        time.sleep(args.seconds / 2)
        staging = os.path.join(work, "staging")
        os.makedirs(staging)
        shutil.copy(FIXTURE, os.path.join(staging, "model.pb"))
        os.rename(staging, os.path.join(base, "2"))

    threading.Thread(target=sample, daemon=True).start()
    swapper = threading.Thread(target=new_version, daemon=True)
    swapper.start()
    out = subprocess.run(
        [args.autocannon, "-c", str(args.connections), "-d", str(args.seconds), "-m", "POST",
         "-H", "content-type=application/json", "-b", body, "--json",
         f"http://{rest}/v1/models/m:predict"],
        capture_output=True, text=True, check=True,
    )
    stop.set()
    swapper.join()
    r = json.loads(out.stdout)
    _, status = get(f"http://{rest}/v1/models/m")
    proc.terminate()
    proc.wait(timeout=60)
    shutil.rmtree(work, ignore_errors=True)

    third = max(1, len(samples) // 3)
    first, last = max(samples[:third]), max(samples[-third:])
    print(f"{r['requests']['total']} requests in {args.seconds} s from {args.connections} clients: "
          f"{r['requests']['average']:.0f}/s; latency p50 {r['latency']['p50']} ms, "
          f"p99 {r['latency']['p99']} ms; errors {r['errors']}, timeouts {r['timeouts']}, non-2xx {r['non2xx']}")
    print(f"resident memory: {first / 1024:.1f} MiB in the first third, {last / 1024:.1f} MiB in the last")
    states = {v["version"]: v["state"] for v in status["model_version_status"]}
    checks = [
        ("every request answered with 2xx", r["errors"] == 0 and r["timeouts"] == 0 and r["non2xx"] == 0
         and r["requests"]["total"] > 0),
        ("the new version picked up and the old one unloaded", states == {"1": "END", "2": "AVAILABLE"}),
        ("resident memory flat", last <= first * 1.2 + 16 * 1024),
    ]
    for name, ok in checks:
        print(f"{'ok    ' if ok else 'FAILED'}  {name}" + ("" if ok else f" ({states if 'version' in name else ''})"))
    failed = sum(1 for _, ok in checks if not ok)
    print(f"{len(checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
