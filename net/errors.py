"""Errors raised by the transport. Each names the peers involved, so a failure in a
multi-party run says who went wrong, not just that something did."""


class NetError(Exception):
    """Base class for every transport error."""


class ProtocolError(NetError):
    """A message arrived that does not match what this party expected (the parties are
    running different code, or a peer is hostile): wrong operation tag, dtype, shape or
    a malformed frame."""


class PeerError(NetError):
    """A peer is gone or silent. `peer` is its id."""

    def __init__(self, peer: int, message: str):
        super().__init__(message)
        self.peer = peer


class PeerTimeout(PeerError):
    """A peer did not send what was expected within the configured timeout."""


class PeerLost(PeerError):
    """A peer's connection went away (its process died or it closed the mesh)."""


class AuthError(NetError):
    """A key or identity problem: an unknown key, a key that does not match the config."""
