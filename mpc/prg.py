"""Cryptographic pseudo-random ring elements: AES-128 in counter mode, keyed by 128-bit seeds.

One `Prg` per seed; `ring(nonce, count)` returns the stream for one nonce, so two parties
holding the same seed and using the same nonce derive the same elements without talking.
A stream is cut into chunks of CHUNK_WORDS words; chunk i is the AES-CTR keystream under the
96-bit IV nonce (8 bytes) || i (4 bytes), counter blocks IV || 2, IV || 3, ...: exactly what
AES-GCM's encryption of zeros under that IV produces, so it is computed that way (the tag is
discarded). `cryptography`'s AES-GCM (OpenSSL, VAES with AVX-512 here) expands 2^20 words in
0.51 ms against 0.95 ms for its AES-CTR mode (which had been 9x pycryptodome's).
"""

from __future__ import annotations

import math
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
        self._aead = AESGCM(self._key)

    def ring(self, nonce: int, count: int) -> np.ndarray:
        """`count` uniform ring elements of stream `nonce` (0 <= nonce < 2^64).

        Encrypts zeros straight into a numpy buffer (`encrypt_into`): no Python bytes
        objects, whose fresh pages cost more than the AES itself on this machine.
        """
        return self.ring_parts(nonce, [count])[0]

    def ring_parts(self, nonce: int, counts) -> list[np.ndarray]:
        """ring(nonce, sum(counts)) cut into parts of `counts` elements, each part its own
        array (so no single allocation is larger than the largest part: glibc maps a
        fresh, page-faulting region for every allocation above 32 MiB)."""
        counts = [int(c) for c in counts]
        if sum(counts) > CHUNK_WORDS * (1 << 32):
            raise ValueError(f"a stream has at most {CHUNK_WORDS << 32} elements")
        prefix = int(nonce).to_bytes(8, "big")
        parts = [np.empty(c + 2, dtype=DTYPE) for c in counts]  # the tag's 16 bytes of slack
        scratch = None
        chunk, part, offset = 0, 0, 0  # the next chunk; where it starts (part, word)
        total = sum(counts)
        done = 0
        while done < total:
            while offset == counts[part]:
                part, offset = part + 1, 0
            words = min(CHUNK_WORDS, total - done)
            iv = prefix + chunk.to_bytes(4, "big")
            if offset + words <= counts[part]:  # the chunk lies in one part: in place
                raw = memoryview(parts[part]).cast("B")[8 * offset:8 * (offset + words) + 16]
                self._aead.encrypt_into(iv, _ZEROS[:8 * words], None, raw)
                offset += words
            else:  # it straddles parts: through a scratch buffer
                if scratch is None:
                    scratch = np.empty(CHUNK_WORDS + 2, dtype=DTYPE)
                self._aead.encrypt_into(iv, _ZEROS[:8 * words], None,
                                        memoryview(scratch).cast("B")[:8 * words + 16])
                taken = 0
                while taken < words:
                    while offset == counts[part]:
                        part, offset = part + 1, 0
                    n = min(words - taken, counts[part] - offset)
                    parts[part][offset:offset + n] = scratch[taken:taken + n]
                    offset, taken = offset + n, taken + n
            done += words
            chunk += 1
        return [p[:c] for p, c in zip(parts, counts)]

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
