"""Moves numbered numpy arrays between numbered peers. Knows nothing of secret sharing."""

from net.errors import (AuthError, HandshakeRefused, NetError, PeerError, PeerLost, PeerTimeout,
                        PeerUnreachable, ProtocolError)
from net.keys import generate_keypair, load_public, load_secret, write_keypair
from net.memory import MemoryHub, MemoryTransport
from net.mesh import ZmqMesh, free_tcp_addresses
from net.stats import CommStats, Counter
from net.transport import Transport

__all__ = ["AuthError", "CommStats", "Counter", "HandshakeRefused", "MemoryHub", "MemoryTransport",
           "NetError", "PeerError", "PeerLost", "PeerTimeout", "PeerUnreachable", "ProtocolError",
           "Transport", "ZmqMesh", "free_tcp_addresses", "generate_keypair", "load_public",
           "load_secret", "write_keypair"]
