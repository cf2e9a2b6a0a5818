"""Checked mode (mpc.protocols.range_check): products and matmul sums beyond the
fixed-point range are reported, naming the operation, the call site and the count; values
inside it never are; the cost is what the docstring says; all parties must agree on it."""

import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mpc
from mpc.harness import run_party
from mpc.protocols import range_check
from mpc.protocols.dealer.providers.dealer import serve_dealer
from net import MemoryHub
from oracle import SETTINGS, split_shares

FP = mpc.FixedPoint()
LIMIT = FP.max_abs  # 2^30


def _issue_cases(ctx):
    """The issue's two: 40000 * 40000, and a 2000-long dot product of 800s."""
    x = mpc.share(ctx, np.array([40000.0, 3.0]) if ctx.pid == 0 else None, 0, shape=(2,))
    y = mpc.share(ctx, np.full(2000, 800.0) if ctx.pid == 1 else None, 1, shape=(2000,))
    product, dot = x * x, y @ y
    try:
        return "revealed", product.reveal(), dot.reveal()
    except mpc.FixedPointRangeError as exc:
        return "refused", str(exc), exc.counts


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_products_and_matmul_sums_beyond_the_range_are_reported(n, protocol):
    results = mpc.run_local(_issue_cases, n, protocol=protocol)
    assert all(r[:2] == results[0][:2] for r in results)   # every party, the same error
    kind, message, counts = results[0]
    assert kind == "refused"
    line = 1 + open(__file__).read().splitlines().index("    product, dot = x * x, y @ y")
    site = f"tests/test_range_check.py:{line}"
    assert counts == {("mul", site, 1 << 46): 1, ("matmul", site, 1 << 46): 1}
    assert f"1 of 2 results of mul at {site} outside +-1.07374e+09" in message
    assert f"1 of 1 results of matmul at {site} outside +-1.07374e+09" in message


def test_without_checked_mode_nothing_is_checked():
    assert mpc.run_local(_issue_cases, 2, check=False)[0][0] == "revealed"


def _products(ctx, x, y, option):
    a = mpc.share(ctx, x if ctx.pid == 0 else None, 0, shape=x.shape)
    b = mpc.share(ctx, y if ctx.pid == 1 else None, 1, shape=y.shape)
    z = a @ b if option == "matmul" else a * b
    try:
        ctx.check_range()
        counts = {}
    except mpc.FixedPointRangeError as exc:
        counts = exc.counts
    return sum(counts.values()), z.reveal()  # the queue is empty now: reveal goes through


def _magnitudes():
    """Products from well inside to 2.9 times beyond the range, away from its edge by 1%."""
    ratio = st.one_of(st.floats(0.0, 0.99), st.floats(1.01, 2.9))
    return st.lists(st.tuples(ratio, st.floats(3.0, 2.0 ** 15), st.booleans()),
                    min_size=1, max_size=30)


@pytest.mark.parametrize("n", [2, 3])
@settings(max_examples=8)
@given(cases=_magnitudes())
def test_the_count_is_exactly_the_products_beyond_the_range(n, cases):
    """x * y with |x y| = ratio 2^30: counted if and only if ratio > 1; a product inside
    the range is never counted, and is exact to one unit."""
    ratio, x, negative = (np.array(c, dtype=float) for c in zip(*cases))
    y = ratio * LIMIT / x * np.where(negative, -1, 1)
    x, y = FP.decode(FP.encode(x)), FP.decode(FP.encode(y))
    beyond = np.abs(x * y) > LIMIT
    assert np.all(beyond == (ratio > 1))
    count, z = mpc.run_local(_products, n, args=(x, y, "mul"))[0]
    assert count == beyond.sum()
    assert np.all(np.abs(z - x * y)[~beyond] <= 2.0 ** -16)


@pytest.mark.parametrize("n", [2, 3])
def test_a_matmul_sum_is_checked_not_its_terms(n):
    """Rows of 1000 products of 1000: each term is small, the sums 1e9 (inside) and
    1.2e9 (beyond) decide."""
    x = np.vstack([np.full(1000, 1000.0), np.full(1000, 1200.0), np.full(1000, -1200.0)])
    y = np.full((1000, 1), 1000.0)
    count, _ = mpc.run_local(_products, n, args=(x, y, "matmul"))[0]
    assert count == 2


def test_failed_local_probabilistic_truncations_are_caught():
    """SecureML's truncation fails with probability |x|/2^64 per element; at products of
    2^29 that is 1 in 8: the check's count is exactly the number of wrong results."""
    rng = np.random.default_rng(7)
    x = rng.uniform(2.0**14, 2.0**15, 400)
    y = 2.0**29 / x
    count, z = mpc.run_local(_products, 2, args=(x, y, "mul"), truncation="local-probabilistic")[0]
    wrong = np.abs(z - FP.decode(FP.encode(x)) * FP.decode(FP.encode(y))) > 1.0
    assert count == wrong.sum() and 10 < count < 120


def _check_cost(ctx, size, count):
    x = mpc.share(ctx, np.ones(size) if ctx.pid == 0 else None, 0, shape=(size,))
    for _ in range(count):
        x = x * 0.5  # a truncation of `size` each, all from one line: one (label, site)
    before = ctx.stats.snapshot(without=("dealer",))
    ctx.check_range()
    after = ctx.stats.snapshot(without=("dealer",))
    return after.rounds - before.rounds, after.bytes_sent - before.bytes_sent


@pytest.mark.parametrize("n, truncation, per_element", [
    (2, "exact", 39.625), (3, "exact", 39.625), (2, "local-probabilistic", 79.25)])
def test_a_check_costs_what_the_docstring_says(n, truncation, per_element):
    """9 rounds; 39.625 bytes per checked element (one comparison; two with the local
    truncation) and 8 per (label, site) to each peer."""
    rounds, sent = mpc.run_local(_check_cost, n, args=(1000, 3), truncation=truncation)[0]
    assert rounds == 9
    assert sent == (3 * 1000 * per_element + 8) * (n - 1)
    assert "Rounds: 9 per check" in range_check.__doc__
    assert "39.625 bytes per checked element" in range_check.__doc__
    assert "79.25 with the local-probabilistic truncation" in range_check.__doc__


def _queue_and_count(ctx, size, batch):
    x = mpc.share(ctx, np.ones(size) if ctx.pid == 0 else None, 0, shape=(size,))
    before = ctx.stats.snapshot(without=("dealer",))
    for _ in range(batch):
        x = x * 0.5
    after = ctx.stats.snapshot(without=("dealer",))
    return (after.rounds - before.rounds, ctx.range_pending_size,
            "range-check" in ctx.stats.by_op)


def test_the_queue_is_checked_as_soon_as_it_is_full(monkeypatch):
    """With MAX_PENDING = 250, four truncations of 100 elements: one check after the third
    (300 queued), the fourth still queued; 4 products of 1 round plus one check of 9."""
    monkeypatch.setattr(range_check, "MAX_PENDING", 250)
    rounds, pending, checked = mpc.run_local(_queue_and_count, 2, args=(100, 4))[0]
    assert (rounds, pending, checked) == (4 + 9, 100, True)


def _settings_of(check_by_party):
    """Start 2 parties (and the dealer) whose check options differ; each party's error."""
    hub, out = MemoryHub(3, timeout=10), {}

    def party(pid):
        transport = hub.transport(pid)
        try:
            out[pid] = run_party(lambda ctx: "started", pid, 2, transport, "dealer",
                                 check=check_by_party[pid])  # protocol "dealer"
        except ValueError as exc:
            out[pid] = str(exc)
        finally:
            transport.close()

    def dealer():
        transport = hub.transport(2)
        try:
            serve_dealer(transport, 2)
        except mpc.PeerLost:
            pass
        finally:
            transport.close()
    threads = [threading.Thread(target=party, args=(p,)) for p in (0, 1)]
    threads.append(threading.Thread(target=dealer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return out


def test_parties_must_agree_on_checked_mode():
    out = _settings_of({0: True, 1: False})
    want = ("party 0 runs with protocol='dealer', frac_bits=16, truncation='exact', check=True "
            "but party 1 with protocol='dealer', frac_bits=16, truncation='exact', "
            "check=False: start every party with the same options")
    assert out == {0: want, 1: want}


OVERFLOW_SCRIPT = """
import numpy as np
import mpc

def main(ctx):
    x = mpc.share(ctx, np.array([40000.0]) if ctx.pid == 0 else None, 0, shape=(1,))
    return (x * x).reveal().tolist()
"""


def test_mpc_run_check_reports_the_overflow(tmp_path):
    script = tmp_path / "overflow.py"
    script.write_text(OVERFLOW_SCRIPT)
    out = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "2", "--check", str(script)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "FixedPointRangeError: fixed-point range check failed: 1 of 1 results of mul at " \
        f"{tmp_path.name}/overflow.py:7 outside +-1.07374e+09" in out.stderr, out.stderr


def _raw_truncation_count(ctx, shares):
    ctx.protocol.truncate(ctx, shares[ctx.pid], 16)
    try:
        ctx.check_range()
        return 0
    except mpc.FixedPointRangeError as exc:
        return sum(exc.counts.values())


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_the_edges_of_the_truncations_range(n, protocol):
    """Ring inputs just inside |x| < 2^62 pass (the bottom edge included); inputs from
    2^62 on, and from two units below -2^62, out to the ring's ends, are reported (one
    unit below -2^62 the result is still right to one unit, and may pass)."""
    inside = [2**62 - 2**17, -(2**62) + 1, -(2**62) + 2**15, 0, 2**61]
    outside = [2**62, -(2**62) - 2**17, 2**63 - 1, -(2**63), 3 * 2**61, -3 * 2**61]
    x = np.array(inside + outside, dtype=np.int64).view(np.uint64)
    shares = split_shares(x, n, protocol, np.random.default_rng(1))
    counts = mpc.run_local(_raw_truncation_count, n, args=(shares,), protocol=protocol)
    assert counts == [len(outside)] * n
