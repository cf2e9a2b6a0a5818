"""nn.Model and nn.DPModel, Keras-shaped: compile/fit/evaluate/predict on numpy arrays of
a named owner or on secret tensors, against the same training in float64 on wine; and
every wrong call refused with an error naming the argument (never an AttributeError)."""

import numpy as np
import pytest

import mpc
import nn
from nn import plain

EPOCHS, BATCH, LR = 2, 16, 0.1


def wine():
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    x, y = load_wine(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(xtr)
    return scaler.transform(xtr), scaler.transform(xte), ytr, yte


def _train_wine(ctx, data, owner):
    xtr, xte, ytr, yte = data
    mine = ctx.pid == owner  # only the owner passes its arrays
    model = nn.Model(nn.Linear(ctx, 13, 3, seed=0))
    model.compile(optimizer=nn.SGD(lr=LR), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(xtr if mine else None, ytr if mine else None, epochs=EPOCHS,
                        batch_size=BATCH, owner=owner, progress=False,
                        validation_data=(xte if mine else None, yte if mine else None))
    scores = model.evaluate(xte if mine else None, yte if mine else None, owner=owner)
    predicted = model.predict(xte if mine else None, owner=owner)
    weights = [p.value.reveal() for p in model.parameters()]
    return history, scores, predicted, weights


@pytest.mark.parametrize("n, owner, protocol", [(2, 1, "dealer"), (3, 2, "dealer"),
                                                (3, 0, "replicated")])
def test_model_on_wine_matches_float64(n, owner, protocol):
    data = wine()
    xtr, xte, ytr, yte = data
    results = mpc.run_local(_train_wine, n, args=(data, owner), protocol=protocol)
    history, scores, predicted, (w, b) = results[owner]
    reference = plain.train(plain.Sequential(plain.Linear(13, 3, seed=0)), plain.SGD(LR),
                            xtr, np.eye(3)[ytr], epochs=EPOCHS, batch_size=BATCH)
    rw, rb = reference.params
    np.testing.assert_allclose(w, rw, atol=5e-3)
    np.testing.assert_allclose(b, rb, atol=5e-3)
    logits = xte @ rw + rb
    want_acc = float(np.mean(logits.argmax(axis=1) == yte))
    assert abs(scores["accuracy"] - want_acc) <= 1 / len(yte)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want_loss = -np.mean(np.log(p[np.arange(len(yte)), yte]))
    assert abs(scores["loss"] - want_loss) < 2e-3
    assert history[-1]["val_accuracy"] == scores["accuracy"]
    assert abs(history[-1]["val_loss"] - scores["loss"]) < 1e-3
    np.testing.assert_allclose(predicted, logits, atol=2e-2)
    # only the owner learns the predictions
    assert all(r[2] is None for pid, r in enumerate(results) if pid != owner)


def _keras_options(ctx, x, labels):
    model = nn.Model(nn.Linear(ctx, 4, 3, seed=2))
    model.compile("Adam", "sparse_categorical_crossentropy", metrics=["acc"])
    history = model.fit(x, labels, epochs=1, batch_size=4, validation_split=0.25, verbose=0)
    return history[-1]


def test_validation_split_verbose_and_acc_as_in_keras():
    rng = np.random.default_rng(3)
    x, labels = rng.normal(size=(12, 4)), rng.integers(0, 3, size=12)
    record = mpc.run_local(_keras_options, 2, args=(x, labels))[0]
    assert set(record) >= {"val_loss", "val_accuracy"}
    assert record["val_accuracy"] * 3 == round(record["val_accuracy"] * 3)  # 3 rows held out


def _secret_inputs(ctx, x, labels):
    model = nn.Model(nn.Linear(ctx, 4, 3, seed=2), nn.Tanh(), nn.Dropout(ctx, 0.3),
                     nn.Linear(ctx, 3, 3, seed=3))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    xs = mpc.share(ctx, x if ctx.pid == 0 else None, 0, shape=x.shape)
    ys = mpc.share(ctx, labels if ctx.pid == 1 else None, 1, shape=labels.shape)
    history = model.fit(xs, ys, epochs=2, batch_size=4, progress=False)
    out = model.predict(xs, to="all")
    called = model(xs).reveal()  # after fit, model(x) is inference too (no dropout)
    w = [p.value.reveal() for p in model.parameters()]
    return len(history), (out, called), w


def test_model_on_secret_tensors_with_dropout():
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(8, 4)), rng.integers(0, 3, size=8).astype(float)
    count, outs, (w1, b1, w2, b2) = mpc.run_local(_secret_inputs, 2, args=(x, labels))[0]
    assert count == 2
    for out in outs:  # predict and model(x) after fit: eval mode
        np.testing.assert_allclose(out, np.tanh(x @ w1 + b1) @ w2 + b2, atol=1e-3)


def _dp_model(ctx, x, y, layers, microbatches, batch):
    model = nn.DPModel(*layers(ctx))
    model.compile(optimizer=nn.DPSGD(1.0, 0.5, num_microbatches=microbatches,
                                     learning_rate=0.2), loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x if ctx.pid == 0 else None, y if ctx.pid == 0 else None, epochs=1,
                        batch_size=batch, progress=False)
    return history[-1]


def test_dp_model_takes_numpy_arrays():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 3))
    y = (x[:, 0] > 0).astype(float)  # 1-D labels become [N, 1]
    record = mpc.run_local(_dp_model, 2, args=(
        x, y, lambda ctx: [nn.Linear(ctx, 3, 4), nn.ReLU(), nn.Linear(ctx, 4, 1)], 4, 8))[0]
    assert record["epsilon"] > 0


# ---------------------------------------------------------------- wrong calls
def _call(ctx, action):
    x, y = np.zeros((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    model = nn.Model(nn.Linear(ctx, 4, 3))
    action(ctx, model, x, y)


def _compiled(model, **options):
    model.compile(**{"optimizer": "sgd", "loss": "sparse_categorical_crossentropy",
                     **options})
    return model


WRONG = [
    ("fit before compile", lambda c, m, x, y: m.fit(x, y), RuntimeError, "call compile"),
    ("no loss", lambda c, m, x, y: m.compile("sgd"), ValueError, "loss is required"),
    ("unknown loss", lambda c, m, x, y: m.compile("sgd", "crossentropy"), ValueError,
     "unknown loss 'crossentropy'; choose one of"),
    ("loss class", lambda c, m, x, y: m.compile("sgd", nn.MSELoss), TypeError,
     "pass an instance, loss=MSELoss"),
    ("unknown optimizer", lambda c, m, x, y: m.compile("rmsprop", "mse"), ValueError,
     "unknown optimizer 'rmsprop'"),
    ("optimizer class", lambda c, m, x, y: m.compile(nn.Adam, "mse"), TypeError,
     "optimizer is the class Adam"),
    ("optimizer of another model", lambda c, m, x, y: m.compile(
        nn.SGD(nn.Linear(c, 2, 2).parameters()), "mse"), ValueError, "other parameters"),
    ("DPSGD in a Model", lambda c, m, x, y: m.compile(nn.DPSGD(1.0, 1.0), "mse"), ValueError,
     "use nn.DPModel"),
    ("metrics as a string", lambda c, m, x, y: m.compile("sgd", "mse", "accuracy"), TypeError,
     "metrics must be a list"),
    ("unknown metric", lambda c, m, x, y: m.compile("sgd", "mse", ["auc"]), ValueError,
     "unknown metrics \\['auc'\\]"),
    ("epochs 0", lambda c, m, x, y: _compiled(m).fit(x, y, epochs=0), ValueError,
     "epochs must be a positive integer, got 0"),
    ("batch_size 2.5", lambda c, m, x, y: _compiled(m).fit(x, y, batch_size=2.5), ValueError,
     "batch_size must be a positive integer, got 2.5"),
    ("rows differ", lambda c, m, x, y: _compiled(m).fit(x, y[:5]), mpc.ShapeError,
     "x has 6 rows but y has 5"),
    ("label out of range", lambda c, m, x, y: _compiled(m).fit(x, y + 1), ValueError,
     "labels must be integers 0..2 \\(the model has 3 outputs\\), got \\[3.0\\]"),
    ("labels for categorical", lambda c, m, x, y: _compiled(
        m, loss="categorical_crossentropy").fit(x, y), mpc.ShapeError,
     "need loss='sparse_categorical_crossentropy'"),
    ("one-hot for sparse", lambda c, m, x, y: _compiled(m).fit(x, np.eye(3)[y]),
     mpc.ShapeError, "one-hot rows need loss='categorical_crossentropy'"),
    ("owner not a party", lambda c, m, x, y: _compiled(m).fit(x, y, owner=5), ValueError,
     "owner must be a party id 0..1"),
    ("owner passes None", lambda c, m, x, y: _compiled(m).fit(None, y), ValueError,
     "x is None at party 0, its owner"),
    ("x not numeric", lambda c, m, x, y: _compiled(m).fit("data.csv", y), (TypeError,
                                                                          ValueError), "x"),
    ("x with NaN", lambda c, m, x, y: _compiled(m).fit(x * np.nan, y), ValueError,
     "x holds NaN"),
    ("bad validation_data", lambda c, m, x, y: _compiled(m).fit(x, y, validation_data=x),
     ValueError, "validation_data must be a pair"),
    ("predict secret without to", lambda c, m, x, y: m.predict(mpc.share_public(c, x)),
     ValueError, "name who learns the predictions"),
    ("predict to nobody", lambda c, m, x, y: m.predict(x, to=7), ValueError,
     "to must be a party id 0..1 or 'all'"),
    ("evaluate before compile", lambda c, m, x, y: m.evaluate(x, y), RuntimeError,
     "before evaluate"),
    ("features differ", lambda c, m, x, y: _compiled(m).fit(x[:, :3], y), mpc.ShapeError,
     "inputs of shape \\(6, 3\\) do not fit the model"),
    ("labels are strings", lambda c, m, x, y: _compiled(m).fit(x, np.array(["cat"] * 6)),
     TypeError,
     "y must be an array of integer labels, got ndarray of <U"),
    ("shuffle=False", lambda c, m, x, y: _compiled(m).fit(x, y, shuffle=False), ValueError,
     "shuffle=False is not supported"),
    ("validation_split 1", lambda c, m, x, y: _compiled(m).fit(x, y, validation_split=1.0),
     ValueError, "validation_split must be in \\[0, 1\\)"),
    ("flat images into Conv2d", lambda c, m, x, y: nn.Model(nn.Conv2d(c, 1, 2, 2)).predict(x),
     mpc.ShapeError, "Conv2d: input of shape \\(6, 4\\); expected \\[N, C, H, W\\]"),
    ("ctx as a layer", lambda c, m, x, y: nn.Model(c, nn.ReLU()), TypeError,
     "layer 0 is a Context: Model takes layers only"),
]


@pytest.mark.parametrize("name, action, kind, message", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_calls_name_the_argument(name, action, kind, message):
    with pytest.raises(mpc.PartyFailed, match=message) as info:
        mpc.run_local(_call, 2, args=(action,), timeout=20)
    assert "AttributeError" not in str(info.value)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    assert any(k.__name__ in str(info.value) for k in kinds), str(info.value)


@pytest.mark.parametrize("layers, message", [
    ((), "needs at least one layer"), ((nn.ReLU,), "layer 0 is the class ReLU"),
    (("relu",), "layer 0 is a str, not an nn.Module")])
def test_model_refuses_what_is_not_a_layer(layers, message):
    with pytest.raises((TypeError, ValueError), match=message):
        nn.Model(*layers)


def _dp_compile_refusal(ctx):
    model = nn.DPModel(nn.Linear(ctx, 4, 4), nn.BatchNorm1d(ctx, 4), nn.Linear(ctx, 4, 1))
    before = ctx.stats.snapshot()
    try:
        model.compile(optimizer=nn.DPSGD(1.0, 1.0, num_microbatches=2), loss="mse")
    except TypeError as exc:
        after = ctx.stats.snapshot()
        return str(exc), after.rounds - before.rounds, after.bytes_sent - before.bytes_sent
    return None


def test_dp_model_refuses_an_unsupported_layer_at_compile():
    message, rounds, sent = mpc.run_local(_dp_compile_refusal, 2)[0]
    assert "layer 1 (BatchNorm1d) has parameters but no per-microbatch gradient" in message
    assert rounds == 0 and sent == 0  # nothing shared, nothing sent


def test_dp_model_refuses_microbatches_that_do_not_divide_the_batch():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.integers(0, 2, size=(32, 1)).astype(float)
    with pytest.raises(mpc.PartyFailed, match="num_microbatches \\(7\\) must divide "
                                              "batch_size \\(32\\)"):
        mpc.run_local(_dp_model, 2, args=(x, y, lambda ctx: [nn.Linear(ctx, 3, 1)], 7, 32))
    with pytest.raises(mpc.PartyFailed, match="num_microbatches must be a positive integer"):
        mpc.run_local(_dp_model, 2, args=(x, y, lambda ctx: [nn.Linear(ctx, 3, 1)], 0, 32))


def _ends_in_softmax(ctx):
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nn.Model(nn.Linear(ctx, 4, 3), nn.Softmax()).compile("sgd", "categorical_crossentropy")
        nn.Model(nn.Linear(ctx, 4, 3), nn.Softmax()).compile("sgd", "mse")
        nn.Model(nn.Linear(ctx, 4, 3)).compile("sgd", "categorical_crossentropy")
    return [str(w.message) for w in caught]


def test_a_softmax_before_a_loss_on_logits_is_warned_about():
    messages = mpc.run_local(_ends_in_softmax, 2)[0]
    assert len(messages) == 1 and "ends in Softmax" in messages[0]
