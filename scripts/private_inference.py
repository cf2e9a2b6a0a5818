"""Private inference with an imported ONNX model: `mpc run -n 3 scripts/private_inference.py
[model.onnx]`.

Party 0 owns a model, party 1 owns images, and only party 1 learns the predictions:
- Party 0's model is an ONNX file: the one given (it must take [N, 1, 8, 8] images and
  give 10 logits), or else a small CNN (Conv 3x3 -> 8, ReLU, MaxPool 2, Flatten, Linear
  128 -> 10) that party 0 trains in plain numpy on scikit-learn's digits (nn.plain) and
  writes with onnx.helper to the temporary directory, as any numpy user could.
  nn.from_onnx(..., owner=0) secret-shares its weights; the other parties learn the
  architecture (layer kinds and weight shapes), never a weight.
- Party 1 secret-shares its test images; the parties run the model on shares; the
  predicted classes (one-hot) are revealed to party 1 alone.
Party 1 then prints its accuracy next to onnxruntime's on the same file and images: a
reference that needs the model and the data in one place, possible only because this
demo runs everyone on one machine.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mpc
import nn
from nn import plain

MODEL_OWNER, DATA_OWNER = 0, 1
DEFAULT_MODEL = Path(tempfile.gettempdir()) / "mpc-dl-digits-cnn.onnx"  # party 0 writes it
CHANNELS, EPOCHS, BATCH, LR = 8, 3, 32, 0.5


def train_plain_cnn(xtr, ytr):
    """Party 0's own model, trained in float64 numpy (no MPC)."""
    model = plain.Sequential(plain.Conv2d(1, CHANNELS, 3, padding=1, seed=0), plain.ReLU(),
                             plain.MaxPool2d(2), plain.Flatten(),
                             plain.Linear(CHANNELS * 16, 10, seed=1))
    return plain.train(model, plain.SGD(LR), xtr, ytr, epochs=EPOCHS, batch_size=BATCH)


def write_onnx(model, path) -> None:
    """The numpy CNN as ONNX, written with onnx.helper as torch.onnx.export would."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    conv, fc = model.layers[0], model.layers[4]
    weights = {"conv.weight": conv.params[0], "conv.bias": conv.params[1],
               "fc.weight": fc.params[0].T, "fc.bias": fc.params[1]}  # Gemm's B is [out, in]
    nodes = [helper.make_node("Conv", ["image", "conv.weight", "conv.bias"], ["c"],
                              name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc",
                              transB=1)]
    graph = helper.make_graph(
        nodes, "digits-cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), n)
                     for n, w in weights.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def onnxruntime_accuracy(path, x, y) -> float:
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    return float((logits.argmax(axis=1) == y.argmax(axis=1)).mean())


def main(ctx):
    xtr, xte, ytr, yte = plain.digits()
    xtr, xte = xtr.reshape(-1, 1, 8, 8), xte.reshape(-1, 1, 8, 8)
    path = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL)
    if ctx.pid == MODEL_OWNER and len(sys.argv) <= 1:
        write_onnx(train_plain_cnn(xtr, ytr), path)  # party 0's model, in the clear
    start, before = time.perf_counter(), ctx.stats.snapshot()
    model = nn.from_onnx(path if ctx.pid == MODEL_OWNER else None, ctx, owner=MODEL_OWNER)
    images = mpc.share(ctx, xte if ctx.pid == DATA_OWNER else None, DATA_OWNER)
    predicted = model(images).argmax(axis=-1).reveal_to(DATA_OWNER)  # one-hot, to party 1
    used = ctx.stats.snapshot()
    if ctx.pid != DATA_OWNER:
        return None
    private = float((predicted.argmax(axis=1) == yte.argmax(axis=1)).mean())
    reference = onnxruntime_accuracy(path, xte, yte)  # party 0's file: a one-machine demo
    print(f"{len(xte)} test images, {ctx.n_parties} parties: private accuracy {private:.4f}, "
          f"onnxruntime on the same model and images {reference:.4f}")
    print(f"  {time.perf_counter() - start:.1f} s, {used.rounds - before.rounds} rounds, "
          f"{(used.bytes_sent - before.bytes_sent) / 1e6:.2f} MB sent by party {ctx.pid}")
    return {"private": private, "onnxruntime": reference}
