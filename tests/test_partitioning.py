"""Horizontally and vertically partitioned data: each party's rows, or each party's
columns of the same records, become one shared matrix; training on it matches float64."""

import numpy as np
import pytest

import mpc
import nn
from nn.plain import breast_cancer, logistic_regression_accuracy


def _columns(ctx):
    widths = [2, 0, 3, 1, 1][:ctx.n_parties]
    mine = np.full((4, widths[ctx.pid]), float(ctx.pid)) if widths[ctx.pid] else None
    return mpc.share_columns(ctx, mine).reveal()


@pytest.mark.parametrize("n", [2, 3, 5])
def test_share_columns_joins_each_party_features_in_order(n):
    widths = [2, 0, 3, 1, 1][:n]
    want = np.concatenate([np.full((4, w), float(p)) for p, w in enumerate(widths)], axis=1)
    for got in mpc.run_local(_columns, n):
        np.testing.assert_array_equal(got, want)


def _mismatched_rows(ctx):
    return mpc.share_columns(ctx, np.ones((3 + ctx.pid, 2))).reveal()


def test_columns_with_different_row_counts_are_refused():
    with pytest.raises(mpc.PartyFailed,
                       match=r"party 1's block has shape \(4, 2\), party 0's \(3, 2\)"):
        mpc.run_local(_mismatched_rows, 2)


def _train_vertical(ctx, data):
    xtr, xte, ytr, yte = data
    features = np.array_split(np.arange(xtr.shape[1]), ctx.n_parties)[ctx.pid]
    x = mpc.share_columns(ctx, xtr[:, features])       # each party: some lab values
    y = mpc.share(ctx, ytr if ctx.pid == 0 else None, 0, shape=ytr.shape)  # party 0: labels
    model = nn.Linear(ctx, xtr.shape[1], 1, seed=0)
    nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), lr=0.1), x, y,
           epochs=2, batch_size=32, progress=False)
    x_test = mpc.share_columns(ctx, xte[:, features])
    y_test = mpc.share(ctx, yte if ctx.pid == 0 else None, 0, shape=yte.shape)
    return nn.accuracy(model, x_test, y_test)


def test_training_on_feature_partitioned_data_matches_float64():
    data = breast_cancer()
    want = logistic_regression_accuracy(*data[:1], data[2], data[1], data[3], epochs=2,
                                        batch_size=32, lr=0.1)
    got = mpc.run_local(_train_vertical, 3, args=(data,))[0]
    assert abs(got - want) <= 0.01, (got, want)
