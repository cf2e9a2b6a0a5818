"""The trusted dealer: a process on the mesh that sends correlated randomness, seed-compressed.

At start the dealer sends each party a fresh 128-bit seed over the encrypted channel. Item
k is corrected by party k mod n, which sends the request (kind and public shapes only); the
dealer expands every party's stream, computes the derived values and sends that party one
correction tensor per derived component. The dealer never receives a share of anything.
"""

from __future__ import annotations

import numpy as np

from mpc.correlations import (ItemSpec, correction_bytes, derive_item, pack_corrections,
                              recipe, unpack_corrections)
from mpc.prg import SEED_BYTES, Prg, new_seed
from mpc.providers.base import Provider, Ticket, corrected_party, party_streams

SEED_SEQ = 0
DONE_REQUEST = b'{"kind": "done"}'


class DealerProvider(Provider):
    """Party side of the dealer: derives shares locally, fetches its corrections."""

    def __init__(self, pid: int, n_parties: int, transport, dealer_id: int):
        self._transport = transport
        self._dealer = dealer_id
        with transport.stats.operation("setup"):
            seed = transport.recv(dealer_id, SEED_SEQ, "seed", np.uint8, (SEED_BYTES,))
        super().__init__(pid, n_parties, bytes(seed))

    def _requested(self, ticket: Ticket) -> None:
        if self.corrects(ticket):
            with self._transport.stats.operation("dealer", apart=True):
                self._transport.send(self._dealer, ticket.number, "request",
                                     ticket.spec.to_bytes())

    def _corrections(self, ticket: Ticket, shapes):
        rec = ticket.recipe
        with self._transport.stats.operation("dealer", apart=True):
            raw = self._transport.recv(self._dealer, ticket.number, "correction", np.uint8,
                                       (correction_bytes(rec),), is_round=False)
        return unpack_corrections(rec, raw)

    def close(self) -> None:
        if corrected_party(self._next_item, self.n_parties) == self.pid:
            with self._transport.stats.operation("dealer", apart=True):
                self._transport.send(self._dealer, self._next_item, "request",
                                     np.frombuffer(DONE_REQUEST, dtype=np.uint8))


def serve_dealer(transport, n_parties: int, idle_timeout: float | None = None) -> int:
    """Run the dealer until the parties say they are done; returns the items served.

    `transport` is the dealer's end of the mesh (its id is n_parties). Raises the
    transport's PeerLost/PeerTimeout if the party it waits for disappears.
    """
    if idle_timeout is not None:
        transport.timeout = idle_timeout
    seeds = [new_seed() for _ in range(n_parties)]
    for pid, seed in enumerate(seeds):
        transport.send(pid, SEED_SEQ, "seed", np.frombuffer(seed, dtype=np.uint8))
    prgs = [Prg(s) for s in seeds]
    number = 1
    while True:
        corrected = corrected_party(number, n_parties)
        raw = transport.recv(corrected, number, "request", np.uint8, None)
        if bytes(raw) == DONE_REQUEST:
            return number - 1
        spec = ItemSpec.from_bytes(raw)
        _, corrections = derive_item(spec, party_streams(prgs, number, spec))
        transport.send(corrected, number, "correction",
                       pack_corrections(recipe(spec), corrections))
        number += 1
