"""Losses: calling one returns its forward output (the residual or the predicted
probabilities) and keeps what backward needs; backward() returns the gradient of the batch
mean. The loss value itself is not computed: revealing it per batch would leak, and
training needs only the gradient (nn.accuracy reports progress instead)."""

from __future__ import annotations

import mpc


class MSELoss:
    """mean((pred - y)^2); gradient 2 (pred - y) / batch."""

    def __call__(self, pred, target):
        self._diff = pred - target
        return self._diff

    def backward(self):
        return self._diff * 2 / self._diff.shape[0]


class BCEWithLogitsLoss:
    """Binary cross-entropy on logits; gradient (sigmoid(z) - y) / batch."""

    def __call__(self, logits, target):
        self._prob = mpc.sigmoid(logits)
        self._target = target
        return self._prob

    def backward(self):
        return (self._prob - self._target) / self._prob.shape[0]


class SoftmaxCrossEntropyLoss:
    """Cross-entropy of softmax(logits) against one-hot targets; gradient
    (softmax(z) - y) / batch."""

    def __call__(self, logits, target):
        self._prob = mpc.softmax(logits, axis=-1)
        self._target = target
        return self._prob

    def backward(self):
        return (self._prob - self._target) / self._prob.shape[0]
