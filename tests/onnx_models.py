"""Small ONNX models written with onnx.helper (no PyTorch needed), and onnxruntime as the
reference that runs them."""

import numpy as np

onnx = __import__("pytest").importorskip("onnx")
ort = __import__("pytest").importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OPSET = 17


def tensor(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def make_model(nodes, inits, input_shape, output="y", opset=OPSET, input_name="x",
               check=True):
    """A model with one float input [N, *input_shape] (N symbolic) and one output, whose
    shape ONNX's inference fills in."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if check:
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model)
    return model


def run_ort(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(x, dtype=np.float32)})[0].astype(np.float64)


def small_cnn(rng, channels=3, classes=4, hw=6):
    """Conv3x3(pad 1)-Relu-MaxPool2-Flatten-Gemm(transB)."""
    w = rng.normal(0, 0.5, (channels, 1, 3, 3))
    b = rng.normal(0, 0.1, channels)
    fc = rng.normal(0, 0.3, (classes, channels * (hw // 2) ** 2))
    fb = rng.normal(0, 0.1, classes)
    nodes = [
        helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c"], name="/conv1/Conv",
                         pads=[1, 1, 1, 1], kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="/fc/Gemm",
                         transB=1)]
    inits = [tensor("conv1.weight", w), tensor("conv1.bias", b), tensor("fc.weight", fc),
             tensor("fc.bias", fb)]
    return make_model(nodes, inits, [1, hw, hw])
