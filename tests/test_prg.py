import numpy as np
import pytest

from mpc.prg import Prg, new_seed


def test_same_seed_same_nonce_same_stream():
    seed = new_seed()
    assert np.array_equal(Prg(seed).ring(7, 100), Prg(seed).ring(7, 100))
    assert not np.array_equal(Prg(seed).ring(7, 100), Prg(seed).ring(8, 100))
    assert not np.array_equal(Prg(seed).ring(7, 100), Prg(new_seed()).ring(7, 100))


def test_ring_elements_are_uniform_over_full_range():
    x = Prg(new_seed()).ring(0, 200_000)
    assert x.dtype == np.uint64
    # every one of the 64 bits is set about half the time (6 sigma band)
    bits = ((x[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)
    sigma = 0.5 / np.sqrt(x.size)
    assert np.all(np.abs(bits - 0.5) < 6 * sigma)


def test_tensors_cut_from_one_stream():
    prg = Prg(new_seed())
    a, b = prg.ring_tensors(3, [(2, 3), (4,)])
    flat = prg.ring(3, 10)
    assert a.shape == (2, 3) and b.shape == (4,)
    assert np.array_equal(np.concatenate([a.ravel(), b]), flat)


def test_seed_length_checked():
    with pytest.raises(ValueError, match="16 bytes"):
        Prg(b"short")


def test_ring_parts_continue_one_stream():
    from mpc.prg import Prg
    prg = Prg(bytes(range(16)))
    counts = [3, 1, 0, (1 << 17) + 5, 7]
    parts = prg.ring_parts(9, counts)
    assert [p.size for p in parts] == counts
    assert np.array_equal(np.concatenate(parts), prg.ring(9, sum(counts)))
