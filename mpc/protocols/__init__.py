"""Secret-sharing protocols behind one interface (mpc.protocols.base.Protocol), one folder
each: `dealer` (additive shares, n >= 2, a trusted dealer's correlated randomness) and
`replicated` (2-out-of-3 replicated shares, exactly 3 parties, honest majority, no dealer).
"""

from __future__ import annotations

PROTOCOLS = ("dealer", "replicated")
PROVIDERS = ("dealer", "insecure-seeded")


def needs_dealer(protocol: str, provider: str = "dealer") -> bool:
    """Whether a run with this protocol and provider has a dealer process."""
    return protocol_class(protocol).uses_dealer and provider == "dealer"


def check_settings(protocol: str, n_parties: int, truncation: str = "exact",
                   provider: str = "dealer") -> None:
    """ValueError naming what protocol `protocol` cannot do with these settings (or an
    unknown protocol or provider), before anything runs."""
    cls = protocol_class(protocol)
    cls.check_settings(n_parties, truncation)
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    if not cls.uses_dealer and provider != "dealer":
        raise ValueError(f"the {protocol} protocol takes no correlated-randomness provider "
                         f"(got provider {provider!r}): it has no dealer")


def protocol_class(name: str):
    """The Protocol class of protocol `name` (ValueError for an unknown name)."""
    if name == "dealer":
        from mpc.protocols.dealer.protocol import DealerProtocol
        return DealerProtocol
    if name == "replicated":
        from mpc.protocols.replicated.protocol import ReplicatedProtocol
        return ReplicatedProtocol
    raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")


def make_protocol(name: str, pid: int, n_parties: int, transport, provider: str = "dealer"):
    """Party `pid`'s side of protocol `name` (with the dealer protocol, its correlated
    randomness from `provider`; the dealer's id is n_parties)."""
    cls = protocol_class(name)
    if name == "dealer":
        return cls(_make_provider(provider, pid, n_parties, transport))
    return cls()


def _make_provider(name: str, pid: int, n_parties: int, transport):
    if name == "dealer":
        from mpc.protocols.dealer.providers.dealer import DealerProvider
        return DealerProvider(pid, n_parties, transport, dealer_id=n_parties)
    if name == "insecure-seeded":
        from mpc.protocols.dealer.providers.insecure import InsecureSeededProvider
        return InsecureSeededProvider(pid, n_parties)
    raise ValueError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}")
