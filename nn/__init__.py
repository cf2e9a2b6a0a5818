"""Neural networks on secret shares, built only on mpc's public API.

A Module has parameters(), zero_grad(), forward (via __call__) and an explicit backward:
in MPC every operation costs rounds, so layers work on whole batches and each layer's
backward is written out rather than taped per scalar.
"""

from nn.checkpoint import CheckpointMismatch
from nn.dp import DPSGD, DPModel
from nn.guard import FixedPointOverflow
from nn.io import load_npz, save_npz
from nn.layers import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, Sigmoid
from nn.losses import BCEWithLogitsLoss, MSELoss, SoftmaxCrossEntropyLoss
from nn.module import Module, Parameter
from nn.optim import SGD, Adam
from nn.privacy import PrivacyAccountant, dp_sgd_epsilon, noise_multiplier_for
from nn.train import accuracy, fit

__all__ = ["Adam", "AvgPool2d", "BCEWithLogitsLoss", "CheckpointMismatch", "Conv2d", "DPModel",
           "DPSGD", "FixedPointOverflow", "Flatten", "MaxPool2d", "Linear", "MSELoss", "Module",
           "Parameter", "PrivacyAccountant", "ReLU", "SGD", "Sequential", "Sigmoid",
           "SoftmaxCrossEntropyLoss", "accuracy", "dp_sgd_epsilon", "fit", "load_npz",
           "noise_multiplier_for", "save_npz"]
