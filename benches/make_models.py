#!/usr/bin/env python3
"""Builds Lathe's benchmark models with TensorFlow/Keras: seeded random weights, batch 1, input `x`.

What it builds, for every model in MODELS (or the names given):
    OUTDIR/<name>/frozen.pb      frozen GraphDef (convert_variables_to_constants_v2): what `lathe` reads
    OUTDIR/<name>/model.onnx     the same GraphDef converted by tf2onnx at opset 17: what onnxruntime reads
    OUTDIR/<name>/saved_model/   a SavedModel with signature `serving_default` (x -> {"y": ...}):
                                 what compare.py times TensorFlow on
    OUTDIR/<name>/input.npy      the input (floats standard normal; token ids uniform over the vocabulary)
    OUTDIR/<name>/output.npy     TensorFlow's answer on input.npy
    OUTDIR/<name>/meta.json      name, input shape and dtype, graph inputs/outputs, node count, params,
                                 the TF op histogram, seed, and onnxruntime's error against output.npy

The models:
    mlp              784-512-512-10, ReLU, softmax output
    cnn              two 3x3 conv + max-pool stages, dense 128, 10 logits (28x28x1 input)
    mobilenet_v2     keras.applications.MobileNetV2, 224x224x3, logits
    resnet50         keras.applications.ResNet50, 224x224x3, logits
    encoder          4 transformer encoder layers (d 256, 4 heads, ff 1024, exact GELU), 128 tokens
    gelu_chain       8 x (scale, shift, exact GELU, layer norm) on 256x1024: elementwise-bound
    densenet         DenseNet-121 (dense blocks 6/12/24/16, growth 32, BN-ReLU-Conv1x1-BN-ReLU-Conv3x3
                     layers whose outputs are concatenated onto their inputs, transitions halving the
                     channels and the resolution), 224x224x3, logits
    text_classifier  int32 token ids [1, 256] -> embedding (vocab 20000, dim 128) -> 3 Conv1D -> global
                     max pooling -> dense 64 -> 4 logits

Each model seeds Keras and NumPy from its own name, so one model regenerates the same alone or with the
others. Batch-norm statistics are randomized so folding them is not a no-op, and embeddings are
standard normal so the classifier's logits are not all near zero.

Usage (TensorFlow, tf2onnx and onnxruntime needed only here; see benches/README.md):
    python benches/make_models.py OUTDIR [name ...]
"""
import json
import os
import sys
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain Eigen kernels: reproducible answers

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

keras = tf.keras
layers = tf.keras.layers

ONNX_OPSET = 17
INPUT_NAME = "x"


def seed_of(name):
    """A stable per-model seed."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def gelu_erf(x):
    """Exact GELU through Erf (Keras' own exact gelu exports Erfc, which tf2onnx cannot convert)."""
    return 0.5 * x * (1.0 + keras.ops.erf(x * 0.7071067811865476))


# ---------------------------------------------------------------------------------------------
# The models: each returns (keras model, input shape, input dtype)
# ---------------------------------------------------------------------------------------------

def mlp():
    x = keras.Input((784,), batch_size=1, name=INPUT_NAME)
    h = layers.Dense(512, activation="relu")(x)
    h = layers.Dense(512, activation="relu")(h)
    y = layers.Dense(10, activation="softmax")(h)
    return keras.Model(x, y), (1, 784), tf.float32


def cnn():
    x = keras.Input((28, 28, 1), batch_size=1, name=INPUT_NAME)
    h = layers.Conv2D(32, 3, activation="relu")(x)
    h = layers.MaxPool2D()(h)
    h = layers.Conv2D(64, 3, activation="relu")(h)
    h = layers.MaxPool2D()(h)
    h = layers.Flatten()(h)
    h = layers.Dense(128, activation="relu")(h)
    y = layers.Dense(10)(h)
    return keras.Model(x, y), (1, 28, 28, 1), tf.float32


def mobilenet_v2():
    m = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
    return m, (1, 224, 224, 3), tf.float32


def resnet50():
    m = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
    return m, (1, 224, 224, 3), tf.float32


def encoder(num_layers=4, d=256, heads=4, seq=128, ff=1024):
    x = keras.Input((seq, d), batch_size=1, name=INPUT_NAME)
    h = x
    for _ in range(num_layers):
        a = layers.MultiHeadAttention(heads, d // heads)(h, h)
        h = layers.LayerNormalization()(h + a)
        f = layers.Dense(ff, activation=gelu_erf)(h)
        f = layers.Dense(d)(f)
        h = layers.LayerNormalization()(h + f)
    return keras.Model(x, h), (1, seq, d), tf.float32


def gelu_chain(steps=8):
    x = keras.Input((256, 1024), batch_size=1, name=INPUT_NAME)
    h = x
    for _ in range(steps):
        h = layers.Activation(gelu_erf)(h * 1.1 + 0.1)
        h = layers.LayerNormalization()(h)
    return keras.Model(x, h), (1, 256, 1024), tf.float32


def bn_relu(h):
    return layers.ReLU()(layers.BatchNormalization(epsilon=1.001e-5)(h))


def dense_block(h, num_layers, growth):
    """DenseNet-BC layers: each one's `growth` new channels are concatenated onto its input."""
    for _ in range(num_layers):
        n = layers.Conv2D(4 * growth, 1, use_bias=False)(bn_relu(h))
        n = layers.Conv2D(growth, 3, padding="same", use_bias=False)(bn_relu(n))
        h = layers.Concatenate(axis=-1)([h, n])
    return h


def transition(h, compression=0.5):
    """Halves the channels (1x1 conv) and the resolution (2x2 average pooling)."""
    channels = int(h.shape[-1] * compression)
    h = layers.Conv2D(channels, 1, use_bias=False)(bn_relu(h))
    return layers.AveragePooling2D(2, strides=2)(h)


def densenet(blocks=(6, 12, 24, 16), growth=32, size=224, classes=1000):
    """DenseNet-121 by default (Huang et al. 2017, the BC variant), built from its parts."""
    x = keras.Input((size, size, 3), batch_size=1, name=INPUT_NAME)
    h = layers.ZeroPadding2D(3)(x)
    h = layers.Conv2D(2 * growth, 7, strides=2, use_bias=False)(h)
    h = bn_relu(h)
    h = layers.ZeroPadding2D(1)(h)
    h = layers.MaxPool2D(3, strides=2)(h)
    for i, n in enumerate(blocks):
        h = dense_block(h, n, growth)
        if i + 1 < len(blocks):
            h = transition(h)
    h = bn_relu(h)
    h = layers.GlobalAveragePooling2D()(h)
    y = layers.Dense(classes)(h)
    return keras.Model(x, y), (1, size, size, 3), tf.float32


VOCAB = 20000


def text_classifier(vocab=VOCAB, dim=128, seq=256, filters=128, classes=4):
    """Token ids -> embedding lookup -> Conv1D stack -> global max pooling -> dense layers."""
    x = keras.Input((seq,), batch_size=1, dtype="int32", name=INPUT_NAME)
    h = layers.Embedding(vocab, dim)(x)
    h = layers.Conv1D(filters, 5, activation="relu")(h)
    h = layers.Conv1D(filters, 5, activation="relu")(h)
    h = layers.MaxPool1D(2)(h)
    h = layers.Conv1D(filters, 3, padding="same", activation="relu")(h)
    h = layers.GlobalMaxPool1D()(h)
    h = layers.Dense(64, activation="relu")(h)
    y = layers.Dense(classes)(h)
    return keras.Model(x, y), (1, seq), tf.int32


MODELS = dict(mlp=mlp, cnn=cnn, mobilenet_v2=mobilenet_v2, resnet50=resnet50, encoder=encoder,
              gelu_chain=gelu_chain, densenet=densenet, text_classifier=text_classifier)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

def randomize_norms_and_embeddings(model, rng):
    """Non-trivial batch-norm statistics (a fresh BN layer is the identity) and unit-scale embeddings.

    Keras initializes embeddings in [-0.05, 0.05], which would leave the classifier's logits near zero
    and hide errors in them.
    """
    for layer in model.layers:
        if isinstance(layer, layers.Embedding):
            w = layer.embeddings
            w.assign(rng.standard_normal(tuple(w.shape)).astype(np.float32))
        elif isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.7, 1.3, c).astype(np.float32))
            layer.beta.assign((rng.standard_normal(c) * 0.1).astype(np.float32))
            layer.moving_mean.assign((rng.standard_normal(c) * 0.1).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))


def make_input(shape, dtype, rng):
    """Standard-normal floats, or token ids uniform over the vocabulary."""
    if dtype.is_integer:
        return rng.integers(0, VOCAB, shape).astype(dtype.as_numpy_dtype)
    return rng.standard_normal(shape).astype(np.float32)


def onnx_error(path, x, y):
    """onnxruntime's largest absolute difference from TensorFlow's answer, or why it could not run."""
    try:
        import onnxruntime as rt
        s = rt.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = s.run(None, {s.get_inputs()[0].name: x})[0]
        return float(np.max(np.abs(got.astype(np.float64) - y.astype(np.float64))))
    except Exception as e:  # report, do not stop: the TF forms are still useful
        return f"failed: {e!r}"[:300]


def export(name, out):
    seed = seed_of(name)
    keras.utils.set_random_seed(seed)
    model, shape, dtype = MODELS[name]()
    rng = np.random.default_rng(seed)
    randomize_norms_and_embeddings(model, rng)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)

    spec = tf.TensorSpec(shape, dtype, name=INPUT_NAME)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    serving = tf.function(lambda x: {"y": model(x, training=False)}).get_concrete_function(spec)
    tf.saved_model.save(model, os.path.join(d, "saved_model"), signatures=serving)

    frozen = convert_variables_to_constants_v2(fn)
    gd = frozen.graph.as_graph_def()
    with open(os.path.join(d, "frozen.pb"), "wb") as f:
        f.write(gd.SerializeToString(deterministic=True))

    x = make_input(shape, dtype, rng)
    y = fn(tf.constant(x)).numpy()
    # The frozen graph must compute what the Keras model does (it is what every runtime reads).
    y_frozen = frozen(tf.constant(x))
    y_frozen = (y_frozen[0] if isinstance(y_frozen, (list, tuple)) else y_frozen).numpy()
    if not np.allclose(y, y_frozen, rtol=1e-5, atol=1e-6):
        raise SystemExit(f"error: {name}: the frozen graph disagrees with the model")
    np.save(os.path.join(d, "input.npy"), x)
    np.save(os.path.join(d, "output.npy"), y)

    inputs = [n.name for n in gd.node if n.op == "Placeholder"]
    ops = {}
    for n in gd.node:
        ops[n.op] = ops.get(n.op, 0) + 1
    meta = dict(name=name, shape=list(shape), dtype=dtype.name, inputs=inputs,
                outputs=[t.name for t in frozen.outputs], nodes=len(gd.node),
                params=int(model.count_params()), seed=seed, tf_ops=dict(sorted(ops.items())))
    onnx_path = os.path.join(d, "model.onnx")
    try:
        import tf2onnx
        tf2onnx.convert.from_graph_def(gd, input_names=[i + ":0" for i in inputs],
                                       output_names=meta["outputs"], opset=ONNX_OPSET,
                                       output_path=onnx_path)
        meta["onnx"] = True
        meta["onnx_max_abs_err"] = onnx_error(onnx_path, x, y)
    except Exception as e:  # keep going: the TF forms are still useful
        meta["onnx"] = f"failed: {e!r}"[:300]
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(json.dumps({k: meta[k] for k in ("name", "shape", "nodes", "params", "onnx")}
                     | {"onnx_max_abs_err": meta.get("onnx_max_abs_err")}), flush=True)


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    out = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        sys.exit(f"error: unknown model(s) {unknown}; known: {' '.join(MODELS)}")
    for n in names:
        export(n, out)


if __name__ == "__main__":
    main()
