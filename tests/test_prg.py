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


def test_stream_is_aes_ctr_under_the_documented_counter_blocks():
    """Chunk i of stream `nonce` is AES-CTR from the block nonce || i || 2 (AES-GCM's
    keystream for the IV nonce || i), whatever way the stream is cut into parts."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from mpc.prg import CHUNK_WORDS
    seed, nonce = bytes(range(16)), 7
    count = 2 * CHUNK_WORDS + 5
    want = []
    for i in range(3):
        block = nonce.to_bytes(8, "big") + i.to_bytes(4, "big") + (2).to_bytes(4, "big")
        enc = Cipher(algorithms.AES(seed), modes.CTR(block)).encryptor()
        want.append(np.frombuffer(enc.update(bytes(8 * CHUNK_WORDS)), dtype=np.uint64))
    want = np.concatenate(want)[:count]
    prg = Prg(seed)
    assert np.array_equal(prg.ring(nonce, count), want)
    cuts = [3, CHUNK_WORDS - 1, 0, CHUNK_WORDS + 1, 2]
    assert np.array_equal(np.concatenate(prg.ring_parts(nonce, cuts)), want[:sum(cuts)])
    assert prg.ring(nonce, 0).size == 0
