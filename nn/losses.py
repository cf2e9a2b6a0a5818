"""Losses: calling one returns its forward output (the residual or the predicted
probabilities) and keeps what backward needs; backward() returns the gradient of the batch
mean. Training needs only the gradient, so the loss value is computed only on demand:
value() gives the batch-mean loss of the last call as a secret scalar (nn.fit reveals it
once per epoch, on a sample, for the progress bar and the overflow guard)."""

from __future__ import annotations

import numpy as np

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


def one_hot(labels, classes: int):
    """[N, classes] 0.0/1.0 rows from secret integer labels of shape [N] or [N, 1] (values
    0..classes-1): [c - 1/2 <= label < c + 1/2] for every c, from one batched comparison
    (8 rounds), so labels off by less than 1/2 still count. A label outside
    0..classes-1 gives a zero row. Labels that a party holds in the clear
    are cheaper one-hot encoded by their owner before sharing (nn.Model.fit does so)."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(labels.shape[0])
    if labels.ndim != 1:
        raise mpc.ShapeError(f"integer labels must have shape [N] or [N, 1], got "
                             f"{labels.shape}")
    n = labels.shape[0]
    wide = labels.reshape(n, 1).broadcast_to((n, classes))
    edges = mpc.stack([wide - (np.arange(classes) - 0.5), wide - (np.arange(classes) + 0.5)])
    above = edges >= 0.0
    return above[0] - above[1]


def _labels_as_rows(name: str, scores, target):
    """Integer labels [N] / [N, 1] as one-hot rows matching the scores [N, C]."""
    if scores.ndim != 2:
        raise mpc.ShapeError(f"{name}: scores must be [N, classes], got {scores.shape}")
    if target.shape[0] != scores.shape[0]:
        raise mpc.ShapeError(f"{name}: {scores.shape[0]} rows of scores but "
                             f"{target.shape[0]} labels")
    if target.shape == scores.shape and scores.shape[1] > 1:
        raise mpc.ShapeError(f"{name} takes integer labels [N]; these look one-hot "
                             f"{target.shape}: use the categorical loss")
    return one_hot(target, scores.shape[1])


class NLLLoss:
    """Negative log-likelihood of integer labels under log-probabilities (the output of
    nn.LogSoftmax), as torch.nn.NLLLoss: -mean_i logp[i, y_i]. Labels are secret
    integers [N] (one-hot by nn.one_hot: 8 rounds a call) or one-hot rows [N, C].
    Gradient -onehot / batch (1 round); value() 2 rounds."""

    def __call__(self, log_probs, target):
        if target.shape == log_probs.shape:
            self._target = target
        else:
            self._target = _labels_as_rows("NLLLoss", log_probs, target)
        self._log_probs = log_probs
        return log_probs

    def backward(self):
        return -self._target / self._log_probs.shape[0]

    def value(self):
        return -(self._target * self._log_probs).sum() / self._log_probs.shape[0]


class SparseCrossEntropyLoss(SoftmaxCrossEntropyLoss):
    """Cross-entropy of softmax(logits) against secret integer labels [N] or [N, 1]
    (Keras' sparse_categorical_crossentropy on logits; torch.nn.CrossEntropyLoss): the
    labels become one-hot rows by nn.one_hot (8 rounds a call), then as
    SoftmaxCrossEntropyLoss."""

    def __call__(self, logits, target):
        return super().__call__(logits, _labels_as_rows("SparseCrossEntropyLoss", logits,
                                                        target))
