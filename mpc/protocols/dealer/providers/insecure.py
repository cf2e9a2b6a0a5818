"""A provider for fast in-process tests. INSECURE: every party knows every seed."""

from __future__ import annotations

import hashlib

from mpc.protocols.dealer.correlations import derive_item
from mpc.prg import Prg, SEED_BYTES
from mpc.protocols.dealer.providers.base import Provider, Ticket, party_streams


def _seed(common: bytes, pid: int) -> bytes:
    return hashlib.sha256(common + pid.to_bytes(4, "big")).digest()[:SEED_BYTES]


class InsecureSeededProvider(Provider):
    """Each party recomputes the dealer's work from one public seed and keeps its own share.

    No messages, deterministic, and insecure by construction: any party can compute every
    other party's shares of every item. For tests only; no launcher uses it unless asked
    for by this name.
    """

    def __init__(self, pid: int, n_parties: int, common_seed: bytes = b"insecure-test-seed"):
        super().__init__(pid, n_parties, _seed(common_seed, pid))
        self._all = [Prg(_seed(common_seed, i)) for i in range(n_parties)]

    def _corrections(self, ticket: Ticket, shapes):
        corrections = derive_item(ticket.spec, party_streams(self._all, ticket.number,
                                                             ticket.spec))
        return corrections
