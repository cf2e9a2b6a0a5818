"""The provider interface: where correlated randomness (triples, pairs) comes from.

Protocols ask for items by `ItemSpec` in two steps, `request` then `take`, so a provider
that talks to a dealer can have the item made while the protocol does other work.
Every provider here is seed-compressed: party i's shares of item k come from its own
AES-CTR stream (seed_i, nonce k), and only one party's derived shares are corrections
from the maker. That party takes turns (item k: party k mod n), so the work of receiving
corrections is spread evenly over the parties.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from mpc.protocols.dealer.correlations import ItemSpec, recipe
from mpc.prg import Prg
from mpc.ring import DTYPE


class Ticket:
    """A requested item: its number, its spec and recipe, and shares already derived."""

    __slots__ = ("number", "spec", "recipe", "derived")

    def __init__(self, number: int, spec: ItemSpec):
        self.number = number
        self.spec = spec
        self.recipe = recipe(spec)
        self.derived = None


class Provider(ABC):
    """Hands this party its shares of correlated randomness."""

    pid: int
    n_parties: int

    def __init__(self, pid: int, n_parties: int, seed: bytes):
        self.pid = pid
        self.n_parties = n_parties
        self._prg = Prg(seed)
        self._next_item = 1

    def corrects(self, ticket: Ticket) -> bool:
        """Whether this party receives the corrections of `ticket`'s item."""
        return corrected_party(ticket.number, self.n_parties) == self.pid

    def request(self, spec: ItemSpec) -> Ticket:
        """Start making an item; cheap, and may send a request to the maker."""
        ticket = Ticket(self._next_item, spec)
        self._next_item += 1
        self._requested(ticket)
        return ticket

    def take(self, ticket: Ticket) -> list[np.ndarray]:
        """This party's shares of the item: free components, then derived components."""
        return self.take_free(ticket) + self.take_derived(ticket)

    def take_free(self, ticket: Ticket) -> list[np.ndarray]:
        """The free components only (local: they come from this party's stream)."""
        rec = ticket.recipe
        free, derived = draw_shares(self._prg, ticket.number, ticket.spec, rec,
                                    self.corrects(ticket))
        ticket.derived = derived
        return free

    def take_derived(self, ticket: Ticket) -> list[np.ndarray]:
        """The derived components; call after take_free. The corrected party may wait for
        the maker here, so protocols take them as late as they can."""
        if self.corrects(ticket):
            return self._corrections(ticket, ticket.recipe.derived)
        assert ticket.derived is not None, "take_free comes first"
        return ticket.derived

    def get(self, spec: ItemSpec) -> list[np.ndarray]:
        return self.take(self.request(spec))

    def _requested(self, ticket: Ticket) -> None:
        """Hook: tell the maker about a new item (the dealer client sends a request)."""

    @abstractmethod
    def _corrections(self, ticket: Ticket, shapes) -> list[np.ndarray]:
        """The corrected party's derived shares of the item."""

    def close(self) -> None:
        """Tell the maker we are done (if it needs telling)."""


def corrected_party(number: int, n_parties: int) -> int:
    """The party that receives item `number`'s corrections."""
    return number % n_parties


def party_streams(prgs: list[Prg], number: int, spec: ItemSpec):
    """Every party's (free, derived-or-None) shares of item `number`, as the maker sees
    them; the corrected party's derived shares are None."""
    rec = recipe(spec)
    corrected = corrected_party(number, len(prgs))
    return [draw_shares(prg, number, spec, rec, pid == corrected)
            for pid, prg in enumerate(prgs)]


def draw_shares(prg: Prg, number: int, spec: ItemSpec, rec, corrected: bool):
    """One party's (free shares, derived shares) of item `number` from its stream, which
    is keyed by the number and the spec's tag (so an item the dealer made for a wrong
    guess of the spec shares no randomness with the real one); the corrected party draws
    only the free ones (derived: None)."""
    stream = prg.derive(number, spec.tag)
    dtypes = [np.dtype(DTYPE)] * len(rec.free)
    if not corrected:
        dtypes += [rec.draw_dtype(i) for i in range(len(rec.derived))]
    shapes = rec.free if corrected else rec.free + rec.derived
    sizes = [math.prod(s) for s in shapes]
    words = [-(-size * dtype.itemsize // 8) for size, dtype in zip(sizes, dtypes)]
    # one stream, each component in its own array; a narrow one uses fewer words
    drawn = [part.view(dtype)[:size].reshape(shape) for part, shape, size, dtype in
             zip(stream.ring_parts(0, words), shapes, sizes, dtypes)]
    free = [rec.reduce_free(i, d) for i, d in enumerate(drawn[:len(rec.free)])]
    if corrected:
        return free, None
    return free, [rec.reduce(i, d) for i, d in enumerate(drawn[len(rec.free):])]
