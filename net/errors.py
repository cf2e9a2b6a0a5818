"""Errors raised by the transport. Each names the peers involved, so a failure in a
multi-party run says who went wrong, not just that something did.

Every error has a `culprit`: the mesh id of the member whose failure or misconfiguration
started it, as far as the member raising it can tell (None when it cannot). A launcher
that collects the errors of every member names that member first."""


class NetError(Exception):
    """Base class for every transport error."""

    def __init__(self, message: str = "", culprit: int | None = None):
        super().__init__(message)
        self.culprit = culprit

    def __reduce__(self):  # picklable with its attributes (a launcher ships them home)
        return _restore, (type(self), str(self), dict(self.__dict__))


def _restore(cls, message: str, state: dict) -> NetError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class ProtocolError(NetError):
    """A message arrived that does not match what this party expected (the parties are
    running different code, or a peer is hostile): wrong operation tag, dtype, shape,
    a malformed frame, a replayed or far-ahead sequence number, a flooded mailbox."""


class PeerError(NetError):
    """A peer is gone, silent or unreachable. `peer` is its id; the culprit is the peer
    unless the error says otherwise."""

    def __init__(self, peer: int, message: str, culprit: int | None = -1):
        super().__init__(message, peer if culprit == -1 else culprit)
        self.peer = peer


class PeerTimeout(PeerError):
    """A peer did not send what was expected within the configured timeout. When its
    link still answered heartbeats, its process is alive: stuck or slow, not dead."""


class PeerLost(PeerError):
    """A peer's connection went away. `how` says what is known of why: "left" (it closed
    the mesh, perhaps saying why), "died" (its connection closed and its address now
    refuses connections), "frozen" (it stopped answering heartbeats while its address
    still accepts TCP connections: a stopped or starved process) or "unreachable" (no
    answer at all: its host or the network is down)."""

    def __init__(self, peer: int, message: str, culprit: int | None = -1, how: str = "left"):
        super().__init__(peer, message, culprit)
        self.how = how


class PeerUnreachable(PeerError):
    """This member cannot open its link to a peer at the address its peers config gives,
    although the peer is running (it connected to this member): the configs disagree on
    the peer's address. The culprit is this member (its config)."""


class AuthError(NetError):
    """A key or identity problem: an unknown key, a key that does not match the config."""


class HandshakeRefused(AuthError, PeerError):
    """The CURVE handshake of one link failed for certain: the peer refused this member's
    key, or the member at the peer's address does not hold the key this member's config
    lists for it. `peer` is the other end; the culprit is the member whose config holds
    the wrong key, as far as can be told."""

    def __init__(self, peer: int, message: str, culprit: int | None = -1):
        PeerError.__init__(self, peer, message, culprit)
