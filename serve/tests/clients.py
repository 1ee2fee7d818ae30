#!/usr/bin/env python3
"""`lathe serve` called by the real clients: TensorFlow Serving's (`tensorflow-serving-api`:
its gRPC stubs, and REST) and Triton's (`tritonclient`, over HTTP and gRPC).

Starts `lathe serve` on free loopback ports over a model repository of the committed fixtures
(the six benchmark models as frozen graphs, one as ONNX, a Keras SavedModel), calls each
model through every client, and compares the outputs with TensorFlow's recorded ones. Bad
requests must get the protocol's error status with a message, and the server must keep
serving. Prints `N passed, N failed` and exits non-zero on any failure.

    python serve/tests/clients.py --lathe target/debug/lathe

With `--models DIR` (the output of `benches/make_models.py`) it serves the six full-size
benchmark models instead, each as its SavedModel and as its ONNX form, and checks every
client's outputs against TensorFlow's (`output.npy`).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
BENCHMARK = ["mlp_tiny", "cnn_tiny", "mobilenet_tiny", "resnet_tiny", "encoder_tiny", "gelu_chain_tiny"]


class Model:
    """A served model: its name, inputs and TensorFlow's outputs (name -> array, tolerances)."""

    def __init__(self, name, inputs, outputs, rtol, atol):
        self.name, self.inputs, self.outputs, self.rtol, self.atol = name, inputs, outputs, rtol, atol


def make_repository(base):
    models = []
    for fixture in BENCHMARK:
        d = os.path.join(FIXTURES, "tf", fixture)
        meta = json.load(open(os.path.join(d, "meta.json")))
        os.makedirs(os.path.join(base, fixture, "1"))
        shutil.copy(os.path.join(d, "model.pb"), os.path.join(base, fixture, "1", "model.pb"))
        inputs = {i["name"]: np.load(os.path.join(d, i["file"])) for i in meta["inputs"]}
        outputs = {o["name"]: np.load(os.path.join(d, o["file"])) for o in meta["outputs"]}
        models.append(Model(fixture, inputs, outputs, meta["rtol"], meta["atol"]))
    # The MLP's ONNX form, and a SavedModel with signature keys for names.
    d = os.path.join(FIXTURES, "tf", "mlp_tiny")
    os.makedirs(os.path.join(base, "mlp_onnx", "1"))
    shutil.copy(os.path.join(d, "model.onnx"), os.path.join(base, "mlp_onnx", "1", "model.onnx"))
    mlp = models[0]
    # tf2onnx names the input by its tensor, `x:0`.
    models.append(Model("mlp_onnx", {"x:0": mlp.inputs["x"]}, None, mlp.rtol, mlp.atol))
    d = os.path.join(FIXTURES, "tf_saved", "keras_saved")
    shutil.copytree(os.path.join(d, "saved_model"), os.path.join(base, "keras", "1"))
    models.append(Model(
        "keras",
        {"features": np.load(os.path.join(d, "serving_default.features.npy"))},
        {"logits": np.load(os.path.join(d, "serving_default.logits.npy"))},
        1e-4, 1e-5,
    ))
    return write_config(base, models), models


FULL_SIZE = ["mlp", "cnn", "mobilenet_v2", "resnet50", "encoder", "gelu_chain"]


def make_full_size_repository(base, models_dir):
    """The six benchmark models of `make_models.py`, as SavedModels and as ONNX (linked, not copied)."""
    models = []
    for name in FULL_SIZE:
        d = os.path.join(models_dir, name)
        meta = json.load(open(os.path.join(d, "meta.json")))
        x, y = np.load(os.path.join(d, "input.npy")), np.load(os.path.join(d, "output.npy"))
        os.makedirs(os.path.join(base, name))
        os.symlink(os.path.join(d, "saved_model"), os.path.join(base, name, "1"))
        # The SavedModel's signature: input `x`, output `y` (see make_models.py).
        models.append(Model(name, {"x": x}, {"y": y}, 1e-3, 1e-4))
        if meta.get("onnx"):
            os.makedirs(os.path.join(base, f"{name}_onnx", "1"))
            os.symlink(os.path.join(d, "model.onnx"), os.path.join(base, f"{name}_onnx", "1", "model.onnx"))
            import onnx
            graph = onnx.load(os.path.join(d, "model.onnx"), load_external_data=False).graph
            models.append(Model(f"{name}_onnx", {graph.input[0].name: x}, {"y": y}, 1e-3, 1e-4))
    return write_config(base, models), models


def write_config(base, models):
    config = os.path.join(base, "models.config")
    with open(config, "w") as f:
        f.write("model_config_list {\n")
        for m in models:
            f.write(f"  config {{ name: '{m.name}' base_path: '{m.name}' model_platform: 'tensorflow' }}\n")
        f.write("}\n")
    return config


def start_server(lathe, config, ready_within=120):
    proc = subprocess.Popen(
        [lathe, "serve", "--model_config_file", config, "--port", "0", "--rest_api_port", "0",
         "--host", "127.0.0.1", "--threads", "1"],
        stderr=subprocess.PIPE, text=True,
    )
    line = proc.stderr.readline()
    m = re.search(r"gRPC on ([\d.:]+), REST on ([\d.:]+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"lathe serve did not start: {line}{proc.stderr.read()}")
    grpc_addr, rest_addr = m.group(1), m.group(2)
    deadline = time.time() + ready_within
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{rest_addr}/v2/health/ready") as r:
                if r.status == 200:
                    return proc, grpc_addr, rest_addr
        except urllib.error.URLError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"lathe serve did not become ready within {ready_within} s")


def check(name, got, want, model):
    got = np.asarray(got).reshape(want.shape).astype(want.dtype)
    if not np.allclose(got, want, rtol=model.rtol, atol=model.atol):
        raise AssertionError(f"{name}: max abs err {np.max(np.abs(got - want))}")


def rest(rest_addr, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{rest_addr}{path}", data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--descriptors", help="lathe-proto's compiled descriptors.bin, to check field numbers")
    ap.add_argument("--models", help="serve the full-size benchmark models of this make_models.py output instead")
    args = ap.parse_args()

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp
    from tritonclient.utils import InferenceServerException

    work = tempfile.mkdtemp(prefix="lathe-serve-clients-")
    config, models = make_full_size_repository(work, args.models) if args.models else make_repository(work)
    proc, grpc_addr, rest_addr = start_server(args.lathe, config, 900 if args.models else 120)
    results = []

    def case(name, f):
        try:
            f()
            results.append((name, None))
            print(f"ok      {name}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            results.append((name, e))
            print(f"FAILED  {name}: {e}")
            traceback.print_exc()

    channel = grpc.insecure_channel(grpc_addr)
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    th = thttp.InferenceServerClient(rest_addr)
    tg = tgrpc.InferenceServerClient(grpc_addr)

    for m in models:
        want = m.outputs
        if want is None:  # the ONNX form answers as its frozen form does
            want = {n: a for n, a in models[0].outputs.items()}

        def tfs_grpc(m=m, want=want):
            req = predict_pb2.PredictRequest()
            req.model_spec.name = m.name
            for k, v in m.inputs.items():
                req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
            resp = predict.Predict(req, timeout=60)
            assert resp.model_spec.version.value == 1, resp.model_spec
            outs = {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}
            assert len(outs) == len(want), sorted(outs)
            for (k, a), w in zip(sorted(outs.items()), [want[k] for k in sorted(want)] if m.outputs else list(want.values())):
                check(f"{m.name} {k}", a, w, m)

        def tfs_rest(m=m, want=want):
            body = {"inputs": {k: v.tolist() for k, v in m.inputs.items()}}
            code, r = rest(rest_addr, f"/v1/models/{m.name}:predict", body)
            assert code == 200, r
            outs = r["outputs"] if isinstance(r["outputs"], dict) else {"only": r["outputs"]}
            for (k, a), w in zip(sorted(outs.items()), [want[k] for k in sorted(want)] if m.outputs else list(want.values())):
                check(f"{m.name} {k}", a, w, m)

        def triton(client, module, m=m, want=want):
            meta = client.get_model_metadata(m.name)
            meta = meta if isinstance(meta, dict) else {"outputs": [{"name": o.name} for o in meta.outputs],
                                                       "inputs": [{"name": i.name, "datatype": i.datatype} for i in meta.inputs]}
            inputs = []
            for i in meta["inputs"]:
                a = m.inputs[i["name"]]
                x = module.InferInput(i["name"], list(a.shape), i["datatype"])
                x.set_data_from_numpy(a)
                inputs.append(x)
            outputs = [module.InferRequestedOutput(o["name"]) for o in meta["outputs"]]
            r = client.infer(m.name, inputs, outputs=outputs)
            names = [o["name"] for o in meta["outputs"]]
            for n, w in zip(sorted(names), [want[k] for k in sorted(want)] if m.outputs else list(want.values())):
                check(f"{m.name} {n}", r.as_numpy(n), w, m)

        case(f"tensorflow-serving-api gRPC Predict {m.name}", tfs_grpc)
        case(f"TensorFlow Serving REST predict {m.name}", tfs_rest)
        case(f"tritonclient HTTP infer {m.name}", lambda m=m: triton(th, thttp, m))
        case(f"tritonclient gRPC infer {m.name}", lambda m=m: triton(tg, tgrpc, m))

    def metadata_and_status():
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.name = "keras"
        req.metadata_field.append("signature_def")
        resp = predict.GetModelMetadata(req, timeout=30)
        from tensorflow_serving.apis import get_model_metadata_pb2 as gm
        sigs = gm.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sigs)
        sig = sigs.signature_def["serving_default"]
        assert list(sig.inputs) == ["features"] and list(sig.outputs) == ["logits"], sig
        sreq = get_model_status_pb2.GetModelStatusRequest()
        sreq.model_spec.name = "keras"
        st = status_stub.GetModelStatus(sreq, timeout=30)
        assert st.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE, st
        assert th.is_server_live() and th.is_server_ready() and th.is_model_ready("keras")
        assert tg.is_server_live() and tg.is_server_ready() and tg.is_model_ready("keras")

    if not args.models:
        case("GetModelMetadata, GetModelStatus, health through every client", metadata_and_status)

    def errors():
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "nope"
        try:
            predict.Predict(req, timeout=30)
            raise AssertionError("an unknown model was answered")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND and "nope" in e.details(), e
        req.model_spec.name = "mlp_tiny"
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 3), np.float32)))
        try:
            predict.Predict(req, timeout=30)
            raise AssertionError("a wrong shape was answered")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "shape" in e.details(), e
        x = thttp.InferInput("x", [1, 16], "INT32")
        x.set_data_from_numpy(np.zeros((1, 16), np.int32))
        try:
            th.infer("mlp_tiny", [x])
            raise AssertionError("a wrong dtype was answered")
        except InferenceServerException as e:
            assert "i32" in str(e), e
        code, r = rest(rest_addr, "/v1/models/mlp_tiny:predict", {"instances": [[1, 2]]})
        assert code == 400 and "shape" in r["error"], r

    if not args.models:
        case("bad requests get the protocol's error and a message", errors)

    def field_numbers():
        """Every field of Lathe's serving messages has the number and type of the clients'."""
        from google.protobuf import descriptor_pb2
        from tensorflow.core.example import example_pb2, feature_pb2
        from tensorflow_serving.apis import (classification_pb2, input_pb2, model_pb2, prediction_log_pb2,
                                             regression_pb2)
        from tensorflow_serving.config import model_server_config_pb2
        import tritonclient.grpc.service_pb2 as triton
        fds = descriptor_pb2.FileDescriptorSet()
        with open(args.descriptors, "rb") as f:
            fds.ParseFromString(f.read())
        mine = {}

        def walk(prefix, messages):
            for m in messages:
                mine[f"{prefix}.{m.name}"] = {f.name: (f.number, f.type) for f in m.field}
                walk(f"{prefix}.{m.name}", m.nested_type)
        for f in fds.file:
            walk(f.package, f.message_type)
        checked, wrong = 0, []

        def check(d):
            nonlocal checked
            for f in d.fields if d.full_name in mine else []:
                if f.name in mine[d.full_name]:
                    checked += 1
                    if mine[d.full_name][f.name] != (f.number, f.type):
                        wrong.append(f"{d.full_name}.{f.name}")
            for n in d.nested_types:
                check(n)
        for module in [predict_pb2, get_model_metadata_pb2, get_model_status_pb2, classification_pb2, regression_pb2,
                       input_pb2, model_pb2, prediction_log_pb2, example_pb2, feature_pb2, model_server_config_pb2,
                       triton]:
            for d in module.DESCRIPTOR.message_types_by_name.values():
                check(d)
        assert checked > 100 and not wrong, f"{checked} fields checked; differing: {wrong}"

    if args.descriptors:
        case("field numbers and types match the clients' protos", field_numbers)
    case("the server still serves",
         lambda: rest(rest_addr, f"/v1/models/{models[0].name}")[0] == 200 or (_ for _ in ()).throw(AssertionError("not serving")))

    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        results.append(("the server stops on SIGTERM", AssertionError("it did not stop within 30 s")))
    shutil.rmtree(work, ignore_errors=True)
    failed = [n for n, e in results if e is not None]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
