"""A small CNN (Conv2d, ReLU, MaxPool2d, Flatten, Linear) trained on shares on the digits
reaches the test accuracy of the same training in float64 (nn.plain), under both protocols."""

import pytest

import mpc
import nn
from nn.plain import cnn_accuracy, digits
from test_nn import share_from_0

CHANNELS, EPOCHS, BATCH, LR = 8, 3, 32, 0.5


def small_cnn(ctx, channels: int, pool: str):
    """The model nn.plain.cnn_accuracy trains, on shares."""
    return nn.Sequential(nn.Conv2d(ctx, 1, channels, 3, padding=1, seed=0), nn.ReLU(),
                         getattr(nn, pool)(2), nn.Flatten(),
                         nn.Linear(ctx, channels * 16, 10, seed=1))


def _train_cnn(ctx, data):
    xtr, xte, ytr, yte = data
    model = small_cnn(ctx, CHANNELS, "MaxPool2d")
    nn.fit(model, nn.SoftmaxCrossEntropyLoss(), nn.SGD(model.parameters(), lr=LR),
           share_from_0(ctx, xtr), share_from_0(ctx, ytr), epochs=EPOCHS, batch_size=BATCH,
           progress=False)
    return nn.accuracy(model, share_from_0(ctx, xte), share_from_0(ctx, yte))


@pytest.mark.parametrize("n, protocol", [(2, "dealer"), (3, "replicated")])
def test_cnn_on_digits_matches_float64_accuracy(n, protocol):
    xtr, xte, ytr, yte = digits()
    data = xtr.reshape(-1, 1, 8, 8), xte.reshape(-1, 1, 8, 8), ytr, yte
    want = cnn_accuracy(data[0], ytr, data[1], yte, channels=CHANNELS, pool="MaxPool2d",
                        epochs=EPOCHS, batch_size=BATCH, lr=LR)
    got = mpc.run_local(_train_cnn, n, args=(data,), protocol=protocol, timeout=300)[0]
    assert want > 0.9, want  # the float64 run learnt: the comparison means something
    assert abs(got - want) <= 0.03, (got, want)
