"""Neural networks on secret shares, built only on mpc's public API.

A Module has parameters(), zero_grad(), forward (via __call__) and an explicit backward:
in MPC every operation costs rounds, so layers work on whole batches and each layer's
backward is written out rather than taped per scalar.
"""

from nn.activations import GELU, LogSoftmax, Softmax, Tanh
from nn.blocks import Dropout, GlobalAvgPool2d, Residual
from nn.dp import DPSGD, DPModel
from nn.graph import Add, Concat, Graph, Reshape
from nn.guard import FixedPointOverflow
from nn.io import load_npz, save_npz
from nn.layers import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, Sigmoid
from nn.losses import BCEWithLogitsLoss, MSELoss, SoftmaxCrossEntropyLoss
from nn.module import Buffer, Module, Parameter
from nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from nn.onnx_export import to_onnx
from nn.onnx_import import OnnxImportError, from_onnx
from nn.optim import SGD, Adam
from nn.privacy import PrivacyAccountant, dp_sgd_epsilon, noise_multiplier_for
from nn.train import accuracy, fit

__all__ = ["Adam", "Add", "AvgPool2d", "BCEWithLogitsLoss", "BatchNorm1d", "BatchNorm2d",
           "Buffer", "Concat", "Conv2d", "DPModel", "DPSGD", "Dropout", "FixedPointOverflow",
           "Flatten", "GELU", "GlobalAvgPool2d", "Graph", "LayerNorm", "Linear", "LogSoftmax",
           "MSELoss", "MaxPool2d", "Module", "OnnxImportError", "Parameter",
           "PrivacyAccountant", "ReLU", "Reshape", "Residual", "SGD", "Sequential", "Sigmoid",
           "Softmax", "SoftmaxCrossEntropyLoss", "Tanh", "accuracy", "dp_sgd_epsilon", "fit",
           "from_onnx", "load_npz", "noise_multiplier_for", "save_npz", "to_onnx"]
