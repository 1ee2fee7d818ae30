"""Write the ONNX backend node tests from the `onnx` package's case generators.

    python tests/onnx/gen_node_tests.py OUT_DIR

Each case becomes OUT_DIR/<test name>/model.onnx and test_data_set_<k>/{input,output}_<i>.pb,
the layout onnx's backend test runner reads and `lathe conformance` runs: a serialized
TensorProto, or a SequenceProto or OptionalProto where the model declares that input or output
a sequence or an optional (as onnx's own `backend-test-tools generate-data` writes them). Maps
are left out; the runner then reports the test as unsupported. Only the `onnx` package (and
numpy) is needed.
"""
import os
import shutil
import sys

import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import node


def write_values(directory, kind, values, declared):
    for i, value in enumerate(values):
        ty = declared[i].type if i < len(declared) else None
        name = declared[i].name if i < len(declared) else ""
        if ty is not None and ty.HasField("sequence_type"):
            proto = numpy_helper.from_list(value, name)
        elif ty is not None and ty.HasField("optional_type"):
            proto = numpy_helper.from_optional(value, name)
        elif isinstance(value, TensorProto):
            proto = value
        else:
            try:
                proto = numpy_helper.from_array(value, name)
            except Exception:  # noqa: BLE001 - a map value
                continue
        with open(os.path.join(directory, f"{kind}_{i}.pb"), "wb") as f:
            f.write(proto.SerializeToString())


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    count = 0
    for case in node.collect_testcases(None):
        d = os.path.join(out, case.name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        graph = case.model.graph
        for k, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(d, f"test_data_set_{k}")
            os.makedirs(ds)
            write_values(ds, "input", inputs, graph.input)
            write_values(ds, "output", outputs, graph.output)
        count += 1
    print(f"{count} ONNX node tests (onnx {onnx.__version__}) written to {out}")


if __name__ == "__main__":
    main()
