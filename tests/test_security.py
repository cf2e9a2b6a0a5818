"""What a corrupt party sees does not depend on the other parties' secrets.

Party 1 is the corrupt one (under the replicated protocol each of the three in turn, since
the roles, the helper of a comparison or a truncation and the parties it deals for, differ
between them; per-role views are also in test_replicated); party 0 holds the secret. For
two very different secrets, the messages the corrupt party receives during a
multiplication, a matrix product, a truncation, a comparison, a ReLU and a training step
must be distributed the same: every one of the 64 bits of every received ring element (and
each of the 8 bits of every byte of the byte strings, the replicated truncation's packed
corrections) is set with the same frequency (two-proportion z-test, 6 sigma), and each is
set half the time (a uniform element).
"""

import numpy as np
import pytest

import mpc

N = 20_000


def _recorded(ctx, secret, op):
    seen, seen_bytes = [], []
    original = ctx.transport._wait

    def recording(frm, seq):
        got_op, array = original(frm, seq)
        if array.dtype == np.uint64:
            seen.append(array.reshape(-1).copy())
        elif array.dtype == np.uint8 and "trunc" in got_op:  # packed corrections
            seen_bytes.append(array.reshape(-1).copy())
        return got_op, array

    ctx.transport._wait = recording
    x = mpc.share(ctx, secret if ctx.pid == 0 else None, owner=0, shape=secret.shape)
    y = mpc.share(ctx, np.full(secret.shape, 1.5) if ctx.pid == 2 % ctx.n_parties else None,
                  owner=2 % ctx.n_parties, shape=secret.shape)
    op(x, y)
    return (np.concatenate(seen) if seen else np.zeros(0, np.uint64),
            np.concatenate(seen_bytes) if seen_bytes else np.zeros(0, np.uint8))


def view_of(secret, op, n_parties, protocol="dealer", party=1):
    return mpc.run_local(_recorded, n_parties, args=(secret, op), protocol=protocol)[party]


def bit_frequencies(values, bits=64):
    shifts = np.arange(bits, dtype=values.dtype)
    return ((values[:, None] >> shifts) & values.dtype.type(1)).mean(axis=0)


OPS = {
    "mul": lambda x, y: x * y,
    "matmul": lambda x, y: x.reshape(100, 200) @ y.reshape(200, 100),
    "public-mul": lambda x, y: x * 0.37,
    "square": lambda x, y: x.square(),
    "compare": lambda x, y: x < y,
    "relu": lambda x, y: x.relu(),
    # batches below FEW_ROUNDS_BELOW: the replicated protocol's 4-round comparison
    "compare-small": lambda x, y: [x[i:i + 2000] < y[i:i + 2000] for i in range(0, N, 2000)],
    "relu-small": lambda x, y: [x[i:i + 2000].relu() for i in range(0, N, 2000)],
    # the replicated protocol's hinge_sums: the comparison's additive parts into a truncation
    "sigmoid": lambda x, y: mpc.sigmoid_piecewise(x[:1000]),
    "sigmoid-small": lambda x, y: [mpc.sigmoid_piecewise(x[i:i + 100]) for i in (0, 100)],
    "training-step": lambda x, y: _sgd_step(x.reshape(200, 100), y.reshape(200, 100)[:, :1]),
}


def _sgd_step(x, y):
    """One SGD step of a linear model with MSE on shared data (forward, backward, update)."""
    import nn
    model = nn.Linear(x.ctx, 100, 1, seed=0)
    loss, optimizer = nn.MSELoss(), nn.SGD(model.parameters(), lr=0.1)
    loss(model(x), y)
    model.backward(loss.backward(), input_grad=False)
    optimizer.step()


VIEWS = [pytest.param(n, "dealer", 1, id=f"dealer-{n}p") for n in (2, 3)] + \
    [pytest.param(3, "replicated", party, id=f"replicated-party{party}") for party in range(3)]


@pytest.mark.parametrize("n_parties, protocol, party", VIEWS)
@pytest.mark.parametrize("op", list(OPS))
def test_view_independent_of_secret(n_parties, protocol, party, op):
    small = np.zeros(N)
    large = np.random.default_rng(0).uniform(-1000, 1000, N)
    views_a = view_of(small, OPS[op], n_parties, protocol, party)
    views_b = view_of(large, OPS[op], n_parties, protocol, party)
    assert views_a[0].size + views_a[1].size > 0
    for view_a, view_b, bits in zip(views_a, views_b, (64, 8)):
        assert view_a.size == view_b.size
        if view_a.size == 0:
            continue
        fa, fb = bit_frequencies(view_a, bits), bit_frequencies(view_b, bits)
        sigma = np.sqrt(0.5 / view_a.size)
        assert np.all(np.abs(fa - 0.5) < 6 * sigma), "a received bit is biased"
        assert np.all(np.abs(fa - fb) < 6 * sigma), "received bits depend on the secret"


def test_non_owner_share_is_uniform_and_owner_free():
    """The non-owner's share of an input comes from a pairwise seed: uniform, and the
    same whatever the owner's value (it never depends on x)."""
    def shares(ctx, value):
        return mpc.share(ctx, value if ctx.pid == 0 else None, owner=0, shape=value.shape).share
    a = mpc.run_local(shares, 2, args=(np.zeros(N),))[1]
    assert np.all(np.abs(bit_frequencies(a) - 0.5) < 6 * np.sqrt(0.25 / N))


def test_dealer_receives_only_requests():
    """The dealer's whole inbox during a computation is public requests: JSON naming a
    kind and shapes, never a ring element."""
    import threading

    from net import MemoryHub
    from mpc.context import Context
    from mpc.protocols.dealer.protocol import DealerProtocol
    from mpc.protocols.dealer.providers.dealer import DealerProvider, serve_dealer

    hub = MemoryHub(3, timeout=10)
    dealer_transport = hub.transport(2)
    seen = []
    original = dealer_transport._wait

    def recording(frm, seq):
        op, array = original(frm, seq)
        seen.append((op, array.dtype, bytes(array)))
        return op, array

    dealer_transport._wait = recording
    dealer = threading.Thread(target=serve_dealer, args=(dealer_transport, 2))
    dealer.start()

    def party(pid, out):
        transport = hub.transport(pid)
        provider = DealerProvider(pid, 2, transport, dealer_id=2)
        ctx = Context(pid, 2, transport, DealerProtocol(provider))
        x = mpc.share(ctx, np.full((4, 4), 3.0) if pid == 0 else None, 0, shape=(4, 4))
        out[pid] = ((x * x) @ x).square().reveal()
        ctx.close()

    out = {}
    threads = [threading.Thread(target=party, args=(p, out)) for p in range(2)]
    for t in threads:
        t.start()
    for t in threads + [dealer]:
        t.join(20)
    np.testing.assert_allclose(out[0], (np.full((4, 4), 9.0) @ np.full((4, 4), 3.0)) ** 2)
    assert seen and all(op == "request" and dtype == np.uint8 for op, dtype, _ in seen)
    assert all(raw.startswith(b'{"kind": ') for _, _, raw in seen)


def _changing_sequence(ctx):
    """A repeated pattern the dealer learns, then a change it cannot guess."""
    x = mpc.share(ctx, np.arange(1.0, 5.0) if ctx.pid == 0 else None, 0, shape=(4,))
    out = []
    for _ in range(4):
        out.append((x * x).reveal())
        out.append(x.square().reveal())
    out.append((x.reshape(2, 2) @ x.reshape(2, 2)).reveal().reshape(-1))  # a new spec
    out.append((x < 2.5).reveal())
    return np.concatenate(out)


def test_dealer_guesses_ahead_and_recovers_from_wrong_guesses():
    x = np.arange(1.0, 5.0)
    want = np.concatenate([x * x, x * x] * 4 + [(x.reshape(2, 2) @ x.reshape(2, 2)).reshape(-1),
                                                (x < 2.5).astype(float)])
    for n in (2, 3):
        got = mpc.run_local(_changing_sequence, n)[0]
        np.testing.assert_allclose(got, want, atol=4 * 2**-16)


def test_item_streams_are_keyed_by_the_spec():
    """A guessed item with the wrong spec uses randomness nobody else ever uses."""
    from mpc.protocols.dealer.correlations import ItemSpec
    from mpc.prg import Prg, new_seed
    prg = Prg(new_seed())
    a = ItemSpec("mul", ((4,), (4,))).tag
    b = ItemSpec("trunc", ((4,),), {"frac_bits": 16}).tag
    assert a != b
    assert not np.array_equal(prg.derive(7, a).ring(0, 8), prg.derive(7, b).ring(0, 8))
    assert np.array_equal(prg.derive(7, a).ring(0, 8), prg.derive(7, a).ring(0, 8))
