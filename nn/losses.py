"""Losses: calling one returns its forward output (the residual or the predicted
probabilities) and keeps what backward needs; backward() returns the gradient of the batch
mean. Training needs only the gradient, so the loss value is computed only on demand:
value() gives the batch-mean loss of the last call as a secret scalar (nn.fit reveals it
once per epoch, on a sample, for the progress bar and the overflow guard)."""

from __future__ import annotations

import mpc


class MSELoss:
    """mean((pred - y)^2); gradient 2 (pred - y) / batch."""

    def __call__(self, pred, target):
        self._diff = pred - target
        return self._diff

    def backward(self):
        return self._diff * 2 / self._diff.shape[0]

    def row_gradients(self):
        """Each row's gradient of its own loss (backward() times the batch, exactly)."""
        return self._diff * 2

    def value(self):
        """sum over outputs, mean over the batch, of the squared error (2 rounds)."""
        return self._diff.square().sum() / self._diff.shape[0]


def _cross_entropy(prob, target):
    """-sum(y log p) / batch with log saturating at p = 2^-10 (so at most 6.93 per term):
    one log and one product (38 rounds)."""
    return -(target * mpc.log(prob)).sum() / prob.shape[0]


class BCEWithLogitsLoss:
    """Binary cross-entropy on logits; gradient (sigmoid(z) - y) / batch. The sigmoid is
    mpc.sigmoid_piecewise by default (error <= 0.0016, 9 rounds): the gradient needs no
    more, and it is most of a logistic regression step's rounds. Pass `sigmoid=mpc.sigmoid`
    for 4 units of error at 48 rounds."""

    def __init__(self, sigmoid=mpc.sigmoid_piecewise):
        self._sigmoid = sigmoid

    def __call__(self, logits, target):
        self._prob = self._sigmoid(logits)
        self._target = target
        return self._prob

    def backward(self):
        return (self._prob - self._target) / self._prob.shape[0]

    def row_gradients(self):
        """Each row's gradient of its own loss (backward() times the batch, exactly)."""
        return self._prob - self._target

    def value(self):
        """mean of -y log p - (1 - y) log(1 - p)."""
        both = mpc.concatenate([self._prob, 1.0 - self._prob], axis=-1)
        return _cross_entropy(both, mpc.concatenate([self._target, 1.0 - self._target], -1))


class SoftmaxCrossEntropyLoss:
    """Cross-entropy of softmax(logits) against one-hot targets; gradient
    (softmax(z) - y) / batch."""

    def __call__(self, logits, target):
        self._prob = mpc.softmax(logits, axis=-1)
        self._target = target
        return self._prob

    def backward(self):
        return (self._prob - self._target) / self._prob.shape[0]

    def row_gradients(self):
        """Each row's gradient of its own loss (backward() times the batch, exactly)."""
        return self._prob - self._target

    def value(self):
        """mean of -sum_classes y log p."""
        return _cross_entropy(self._prob, self._target)
