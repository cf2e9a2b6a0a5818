"""Cryptographic pseudo-random ring elements: AES-128 in counter mode, keyed by 128-bit seeds.

One `Prg` per seed; `ring(nonce, count)` returns the stream for one nonce, so two parties
holding the same seed and using the same nonce derive the same elements without talking.
AES-CTR comes from `cryptography` (OpenSSL, AES-NI): about 9x faster than pycryptodome
on this machine (1.5 ms against 13 ms for 10^6 elements).
"""

from __future__ import annotations

import math
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc.ring import DTYPE

SEED_BYTES = 16
CHUNK_WORDS = 1 << 17  # encrypt a 1 MiB zero block at a time into the output
_ZEROS = memoryview(bytes(8 * CHUNK_WORDS))  # read-only, shared by every generator


def new_seed() -> bytes:
    """A fresh 128-bit seed from the operating system's generator."""
    return secrets.token_bytes(SEED_BYTES)


class Prg:
    """AES-CTR keystream as uniform uint64 ring elements (full range)."""

    def __init__(self, seed: bytes):
        if len(seed) != SEED_BYTES:
            raise ValueError(f"a seed has {SEED_BYTES} bytes, got {len(seed)}")
        self._key = bytes(seed)

    def ring(self, nonce: int, count: int) -> np.ndarray:
        """`count` uniform ring elements of stream `nonce` (0 <= nonce < 2^64).

        Encrypts zeros straight into a numpy buffer (`update_into`): no Python bytes
        objects, whose fresh pages cost more than the AES itself on this machine.
        """
        count = int(count)
        counter_block = int(nonce).to_bytes(8, "big") + bytes(8)
        enc = Cipher(algorithms.AES(self._key), modes.CTR(counter_block)).encryptor()
        out = np.empty(count + 2, dtype=DTYPE)  # update_into wants a block of slack
        raw = memoryview(out).cast("B")
        for start in range(0, count, CHUNK_WORDS):
            words = min(CHUNK_WORDS, count - start)
            enc.update_into(_ZEROS[:8 * words], raw[8 * start:])
        return out[:count]

    def ring_parts(self, nonce: int, counts) -> list[np.ndarray]:
        """ring(nonce, sum(counts)) cut into parts of `counts` elements, each part its own
        array (so no single allocation is larger than the largest part: glibc maps a
        fresh, page-faulting region for every allocation above 32 MiB)."""
        counter_block = int(nonce).to_bytes(8, "big") + bytes(8)
        enc = Cipher(algorithms.AES(self._key), modes.CTR(counter_block)).encryptor()
        parts = []
        for count in counts:
            count = int(count)
            out = np.empty(count + 2, dtype=DTYPE)  # update_into wants a block of slack
            raw = memoryview(out).cast("B")
            for start in range(0, count, CHUNK_WORDS):
                words = min(CHUNK_WORDS, count - start)
                enc.update_into(_ZEROS[:8 * words], raw[8 * start:])
            parts.append(out[:count])
        return parts

    def derive(self, number: int, tag: bytes) -> "Prg":
        """An independent generator for (number, tag): AES of the block number || tag under
        this seed, a PRF, so streams for different tags never overlap."""
        if len(tag) != 8:
            raise ValueError(f"a tag has 8 bytes, got {len(tag)}")
        block = int(number).to_bytes(8, "big") + bytes(tag)
        enc = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()
        return Prg(enc.update(block) + enc.finalize())

    def ring_tensors(self, nonce: int, shapes) -> list[np.ndarray]:
        """One stream cut into tensors of the given shapes, in order."""
        sizes = [math.prod(s) for s in shapes]
        flat = self.ring(nonce, sum(sizes))
        out, start = [], 0
        for shape, size in zip(shapes, sizes):
            out.append(flat[start:start + size].reshape(shape))
            start += size
        return out
