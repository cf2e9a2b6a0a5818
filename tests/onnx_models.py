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


def deep_cnn(rng):
    """Conv-BatchNormalization-Relu-Dropout-GlobalAveragePool-Flatten-Gemm-Tanh-Gemm-Softmax."""
    c = 3
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv",
                              pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "bn.weight", "bn.bias",
                                                     "bn.running_mean", "bn.running_var"],
                              ["b"], name="bn", epsilon=1e-3, momentum=0.8),
             helper.make_node("Relu", ["b"], ["r"], name="relu"),
             helper.make_node("Dropout", ["r", "ratio"], ["d"], name="drop"),
             helper.make_node("GlobalAveragePool", ["d"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc1.weight", "fc1.bias"], ["h"], name="fc1",
                              transB=1),
             helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
             helper.make_node("Gemm", ["t", "fc2.weight", "fc2.bias"], ["z"], name="fc2",
                              transB=1),
             helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=-1)]
    inits = [tensor("conv.weight", rng.normal(0, 0.5, (c, 1, 3, 3))),
             tensor("conv.bias", rng.normal(0, 0.1, c)),
             tensor("bn.weight", rng.uniform(0.5, 1.5, c)),
             tensor("bn.bias", rng.normal(0, 0.1, c)),
             tensor("bn.running_mean", rng.normal(0, 0.2, c)),
             tensor("bn.running_var", rng.uniform(0.5, 2.0, c)), tensor("ratio", 0.3),
             tensor("fc1.weight", rng.normal(0, 0.5, (5, c))),
             tensor("fc1.bias", rng.normal(0, 0.1, 5)),
             tensor("fc2.weight", rng.normal(0, 0.5, (4, 5))),
             tensor("fc2.bias", rng.normal(0, 0.1, 4))]
    return make_model(nodes, inits, [1, 6, 6])


def layer_norm_mlp(rng):
    """MatMul+Add-LayerNormalization-Tanh-Gemm-LogSoftmax."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m"], name="mm"),
             helper.make_node("Add", ["b1", "m"], ["a"], name="add"),
             helper.make_node("LayerNormalization", ["a", "ln.weight", "ln.bias"], ["n"],
                              name="ln", axis=-1, epsilon=1e-5),
             helper.make_node("Tanh", ["n"], ["t"], name="tanh"),
             helper.make_node("Gemm", ["t", "w2", "b2"], ["z"], name="out"),
             helper.make_node("LogSoftmax", ["z"], ["y"], name="logsoftmax", axis=1)]
    inits = [tensor("w1", rng.normal(0, 0.5, (4, 6))), tensor("b1", rng.normal(0, 0.1, 6)),
             tensor("ln.weight", rng.uniform(0.5, 1.5, 6)),
             tensor("ln.bias", rng.normal(0, 0.1, 6)),
             tensor("w2", rng.normal(0, 0.5, (6, 3))), tensor("b2", rng.normal(0, 0.1, 3))]
    return make_model(nodes, inits, [4])


def gelu_mlp(rng):
    """Gemm-Gelu-Gemm at opset 20 (where ONNX has Gelu)."""
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Gelu", ["h"], ["g"], name="gelu"),
             helper.make_node("Gemm", ["g", "w2", "b2"], ["y"], name="fc2")]
    inits = [tensor("w1", rng.normal(0, 0.7, (4, 6))), tensor("b1", rng.normal(0, 0.1, 6)),
             tensor("w2", rng.normal(0, 0.5, (6, 3))), tensor("b2", rng.normal(0, 0.1, 3))]
    return make_model(nodes, inits, [4], opset=20)
