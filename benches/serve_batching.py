#!/usr/bin/env python3
"""What dynamic batching does to `lathe serve`'s throughput under concurrent clients.

Starts two `lathe serve` processes on one model, batching off and on, and drives each in turn
with h2load (Debian's `nghttp2-client`) as 16 concurrent gRPC clients calling TensorFlow
Serving's Predict with one row each, alternating between the two servers for several rounds so
that both see the same machine. Prints calls per second per round, their ratio, and the mean
batch size from the batching server's metrics.

    python3 benches/serve_batching.py --lathe target/release/lathe BASE_PATH INPUT.npy \\
        [--rounds 4] [--seconds 3] [--clients 16] [--max-batch-size 16] \\
        [--server-cpus 0 --client-cpus 1]

BASE_PATH holds the model's versions (BASE_PATH/1/...); INPUT.npy is one call's input (its
only input, float32, batch 1). Needs numpy only: the request is encoded here.

`--server-cpus` and `--client-cpus` (comma-separated CPU numbers) pin the servers and h2load
to separate cores, so that the figure is the server's throughput rather than what is left of
the cores the load generator shares with it. The servers size their kernel thread pools to the
cores they are given.
"""

import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def predict_request(model, input_name, x):
    """A tensorflow.serving.PredictRequest with one float32 input, as a gRPC message frame."""
    assert x.dtype == np.float32
    shape = b"".join(field(2, 2, field(1, 0, d)) for d in x.shape)
    tensor = field(1, 0, 1) + field(2, 2, shape) + field(4, 2, x.tobytes())  # DT_FLOAT = 1
    entry = field(1, 2, input_name.encode()) + field(2, 2, tensor)
    body = field(1, 2, field(1, 2, model.encode())) + field(2, 2, entry)
    return b"\0" + struct.pack(">I", len(body)) + body


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpus):
    """A `preexec_fn` that confines the child to `cpus` (None: anywhere)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start(lathe, base, extra, cpus):
    grpc, rest = free_port(), free_port()
    proc = subprocess.Popen(
        [lathe, "serve", "--model_name", "m", "--model_base_path", base, "--host", "127.0.0.1",
         "--port", str(grpc), "--rest_api_port", str(rest)] + extra,
        stderr=subprocess.DEVNULL, preexec_fn=pinned(cpus))
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{rest}/v2/health/ready") as r:
                if r.status == 200:
                    return proc, grpc, rest
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("lathe serve did not become ready")


def rate(port, body_file, seconds, clients, cpus):
    out = subprocess.run(
        ["h2load", "-D", str(seconds), "-c", str(clients), "-m", "1", "-d", body_file,
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         f"http://127.0.0.1:{port}/tensorflow.serving.PredictionService/Predict"],
        capture_output=True, text=True, check=True, preexec_fn=pinned(cpus)).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if not done or done.group(1) != done.group(2):
        sys.exit(f"h2load: not every call succeeded:\n{out}")
    return float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))


def cpu_list(text):
    return {int(c) for c in text.split(",")}


def fmt(cpus):
    return "any" if cpus is None else ",".join(map(str, sorted(cpus)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("base")
    ap.add_argument("input")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--batch-timeout-micros", type=int, default=500)
    ap.add_argument("--input-name", default="x")
    ap.add_argument("--server-cpus", type=cpu_list, help="pin the servers to these CPUs, e.g. 0")
    ap.add_argument("--client-cpus", type=cpu_list, help="pin h2load to these CPUs, e.g. 1")
    args = ap.parse_args()
    server, client = args.server_cpus, args.client_cpus

    x = np.load(args.input)
    body = tempfile.NamedTemporaryFile(suffix=".grpc", delete=False)
    body.write(predict_request("m", args.input_name, x))
    body.close()
    plain = start(args.lathe, args.base, [], server)
    batched = start(args.lathe, args.base, [
        "--enable_batching", "--max_batch_size", str(args.max_batch_size),
        "--batch_timeout_micros", str(args.batch_timeout_micros)], server)
    try:
        # Warm both: each batch size compiles on its first batch.
        rate(plain[1], body.name, 1, args.clients, client)
        rate(batched[1], body.name, 1, args.clients, client)
        ratios = []
        where = "" if server is None and client is None else \
            f" (servers on CPUs {fmt(server)}, h2load on {fmt(client)})"
        print(f"{args.clients} concurrent gRPC clients{where}, calls per second, {args.seconds} s each:")
        for k in range(args.rounds):
            off = rate(plain[1], body.name, args.seconds, args.clients, client)
            on = rate(batched[1], body.name, args.seconds, args.clients, client)
            ratios.append(on / off)
            print(f"  round {k + 1}: batching off {off:8.0f}   on {on:8.0f}   {on / off:.2f}x")
        with urllib.request.urlopen(f"http://127.0.0.1:{batched[2]}/monitoring/prometheus/metrics") as r:
            metrics = r.read().decode()
        count = {m: float(v) for m, v in re.findall(r"^(lathe_batch(?:es|_rows)_total)\{[^}]*\} (\S+)$",
                                                     metrics, re.M)}
        mean = count["lathe_batch_rows_total"] / max(count["lathe_batches_total"], 1)
        ratios.sort()
        print(f"ratio: median {ratios[len(ratios) // 2]:.2f}x, range {ratios[0]:.2f}-{ratios[-1]:.2f}x; "
              f"mean batch {mean:.1f} rows")
    finally:
        for proc, _, _ in (plain, batched):
            proc.terminate()
            proc.wait(timeout=30)
        os.unlink(body.name)


if __name__ == "__main__":
    main()
