"""Neural networks on secret shares, built only on mpc's public API.

A Module has parameters(), zero_grad(), forward (via __call__) and an explicit backward:
in MPC every operation costs rounds, so layers work on whole batches and each layer's
backward is written out rather than taped per scalar.
"""

from nn.activations import GELU, LogSoftmax, Softmax, Tanh
from nn.blocks import Dropout, GlobalAvgPool2d, Residual
from nn.checkpoint import CheckpointMismatch
from nn.dp import DPSGD
from nn.graph import Add, Concat, Graph, Reshape
from nn.guard import FixedPointOverflow
from nn.io import load_npz, save_npz
from nn.keras import DPModel, Model
from nn.layers import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, Sigmoid
from nn.losses import (BCEWithLogitsLoss, MSELoss, NLLLoss, SoftmaxCrossEntropyLoss,
                       SparseCrossEntropyLoss, one_hot)
from nn.module import Buffer, Module, Parameter
from nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from nn.onnx_export import to_onnx
from nn.onnx_import import from_onnx, onnx_to_npz
from nn.onnx_plan import OnnxImportError
from nn.optim import SGD, Adam, AdamW
from nn.privacy import PrivacyAccountant, dp_sgd_epsilon, noise_multiplier_for
from nn.schedules import CosineDecay, ExponentialDecay, Schedule, StepDecay
from nn.train import accuracy, fit

__all__ = ["accuracy", "Adam", "AdamW", "Add", "AvgPool2d", "BatchNorm1d", "BatchNorm2d",
           "BCEWithLogitsLoss", "Buffer", "CheckpointMismatch", "Concat", "Conv2d", "CosineDecay",
           "dp_sgd_epsilon",
           "DPModel", "DPSGD", "Dropout", "ExponentialDecay", "fit", "FixedPointOverflow",
           "Flatten", "from_onnx", "GELU", "GlobalAvgPool2d", "Graph", "LayerNorm", "Linear",
           "load_npz", "LogSoftmax", "MaxPool2d", "Model", "Module", "MSELoss", "NLLLoss",
           "noise_multiplier_for", "one_hot", "onnx_to_npz", "OnnxImportError", "Parameter",
           "PrivacyAccountant", "ReLU", "Reshape", "Residual", "save_npz", "Schedule",
           "Sequential", "SGD", "Sigmoid", "Softmax", "SoftmaxCrossEntropyLoss",
           "SparseCrossEntropyLoss", "StepDecay", "Tanh", "to_onnx"]
