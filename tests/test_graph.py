"""nn.Graph: a ResNet-style block with a residual Add, a Concat and a value used three times
trains on shares as the same DAG does in float64 (2 and 3 parties), and malformed graphs
are refused naming the node."""

import numpy as np
import pytest

import mpc
import nn
from nn import plain
from oracle import SETTINGS

N_STEPS, BATCH, LR = 3, 8, 0.5


def _block(ctx):
    """conv-relu (r1) -> conv (c2) -> add(c2, r1) -> relu (r2) -> concat(r2, r1) -> avgpool
    -> flatten -> linear: r1 feeds three nodes, so its gradient is a sum of three."""
    g = nn.Graph("x")
    g.add("c1", nn.Conv2d(ctx, 1, 3, 3, padding=1, seed=0), "x")
    g.add("r1", nn.ReLU(), "c1")
    g.add("c2", nn.Conv2d(ctx, 3, 3, 3, padding=1, seed=1), "r1")
    g.add("sum", nn.Add(), "c2", "r1")
    g.add("r2", nn.ReLU(), "sum")
    g.add("cat", nn.Concat(axis=1), "r2", "r1")
    g.add("pool", nn.AvgPool2d(2), "cat")
    g.add("flat", nn.Flatten(), "pool")
    g.add("fc", nn.Linear(ctx, 6 * 9, 3, seed=2), "flat")
    return g


class _PlainBlock:
    """The same DAG in float64 from nn.plain's layers (same seeded initialisers)."""

    def __init__(self):
        self.c1, self.r1 = plain.Conv2d(1, 3, 3, padding=1, seed=0), plain.ReLU()
        self.c2, self.r2 = plain.Conv2d(3, 3, 3, padding=1, seed=1), plain.ReLU()
        self.pool, self.flat = plain.AvgPool2d(2), plain.Flatten()
        self.fc = plain.Linear(6 * 9, 3, seed=2)
        self.layers = [self.c1, self.c2, self.fc]

    @property
    def params(self):
        return [p for layer in self.layers for p in layer.params]

    @property
    def grads(self):
        return [g for layer in self.layers for g in layer.grads]

    def forward(self, x):
        a1 = self.r1.forward(self.c1.forward(x))
        a2 = self.r2.forward(self.c2.forward(a1) + a1)
        cat = np.concatenate([a2, a1], axis=1)
        return self.fc.forward(self.flat.forward(self.pool.forward(cat)))

    def backward(self, g):
        g_cat = self.pool.backward(self.flat.backward(self.fc.backward(g)))
        g_sum = self.r2.backward(g_cat[:, :3])
        g_a1 = g_cat[:, 3:] + g_sum + self.c2.backward(g_sum)
        return self.c1.backward(self.r1.backward(g_a1))


def _data():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (N_STEPS * BATCH, 1, 6, 6))
    y = np.eye(3)[rng.integers(0, 3, len(x))]
    return x, y


def _train_shares(ctx, x, y):
    model = _block(ctx)
    xs = mpc.share(ctx, x if ctx.pid == 0 else None, 0, shape=x.shape)
    ys = mpc.share(ctx, y if ctx.pid == ctx.n_parties - 1 else None, ctx.n_parties - 1,
                   shape=y.shape)
    nn.fit(model, nn.SoftmaxCrossEntropyLoss(), nn.SGD(model.parameters(), lr=LR), xs, ys,
           epochs=1, batch_size=BATCH, progress=False)
    return {n: p.value.reveal() for n, p in model.named_parameters()}


@pytest.mark.parametrize("n_parties, protocol", SETTINGS)
def test_resnet_block_trains_on_shares_as_in_float64(n_parties, protocol):
    x, y = _data()
    got = mpc.run_local(_train_shares, n_parties, args=(x, y), protocol=protocol)[0]
    reference = plain.train(_PlainBlock(), plain.SGD(LR), x, y, epochs=1, batch_size=BATCH)
    names = ["c1.weight", "c1.bias", "c2.weight", "c2.bias", "fc.weight", "fc.bias"]
    assert list(got) == names
    start = _PlainBlock().params
    for name, want, before in zip(names, reference.params, start):
        assert np.abs(want - before).max() > 1e-3, f"{name} did not move: the test is void"
        # 3 steps of fixed-point training: each product's truncation is off by <= 1 unit,
        # summed over the batch and carried through two convolutions.
        np.testing.assert_allclose(got[name], want, atol=2e-3, err_msg=name)


def _input_gradient(ctx, x, g):
    model = _block(ctx)
    xs = mpc.share(ctx, x if ctx.pid == 0 else None, 0, shape=x.shape)
    model(xs)
    return model.backward(mpc.share_public(ctx, g)).reveal()


def test_input_gradient_sums_every_path():
    x, _ = _data()
    x = x[:4]
    g = np.random.default_rng(1).normal(0, 1, (4, 3))
    got = mpc.run_local(_input_gradient, 2, args=(x, g))[0]
    reference = _PlainBlock()
    reference.forward(x)
    np.testing.assert_allclose(got, reference.backward(g), atol=2e-3)


def test_concat_and_add_backward_split_and_unbroadcast():
    def main(ctx):
        a = mpc.share_public(ctx, np.ones((2, 3)))
        b = mpc.share_public(ctx, np.ones((2, 2)))
        c = mpc.share_public(ctx, np.ones((1, 3)))
        cat, add = nn.Concat(axis=1), nn.Add()
        cat(a, b)
        add(a, c)
        grad = mpc.share_public(ctx, np.arange(10.0).reshape(2, 5))
        ga, gb = cat.backward(grad)
        g1, g2 = add.backward(ga)
        return ga.reveal(), gb.reveal(), g1.reveal(), g2.reveal()
    ga, gb, g1, g2 = mpc.run_local(main, 2)[0]
    np.testing.assert_allclose(ga, [[0, 1, 2], [5, 6, 7]])
    np.testing.assert_allclose(gb, [[3, 4], [8, 9]])
    np.testing.assert_allclose(g1, ga)
    np.testing.assert_allclose(g2, [[5, 7, 9]])


def test_malformed_graphs_are_refused():
    g = nn.Graph("x")
    with pytest.raises(ValueError, match=r"inputs \['y'\] are not the graph's inputs"):
        g.add("a", nn.ReLU(), "y")
    relu = nn.ReLU()
    g.add("a", relu, "x")
    with pytest.raises(ValueError, match="already used"):
        g.add("a", nn.ReLU(), "x")
    with pytest.raises(ValueError, match="already node 'a'"):
        g.add("b", relu, "a")
    with pytest.raises(TypeError, match="not an nn.Module"):
        g.add("c", lambda t: t, "a")


def test_a_shape_error_names_the_node():
    def main(ctx):
        g = nn.Graph("x")
        g.add("fc", nn.Linear(ctx, 3, 2), "x")
        g.add("r", nn.Reshape([5, -1]), "fc")
        g(mpc.share_public(ctx, np.ones((4, 3))))
    with pytest.raises(mpc.PartyFailed, match=r"node 'r' \(Reshape\) on fc \(4, 2\): "
                                              r"Reshape: cannot reshape"):
        mpc.run_local(main, 2)
