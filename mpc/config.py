"""The cluster file: every party's (and the dealer's) address and public key.

    # cluster.toml
    timeout = 60.0          # seconds a party waits for a peer before giving up
    frac_bits = 16
    [[party]]
    id = 0
    address = "tcp://10.0.0.1:7000"
    public_key = "..."      # z85, from `mpc keys`
    [dealer]
    address = "tcp://10.0.0.9:7100"
    public_key = "..."

Each process also needs its own secret key file, by default `keys/party<ID>.key_secret`
(or `keys/dealer.key_secret`) next to the config.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from net import AuthError


@dataclass(frozen=True)
class Peer:
    id: int
    address: str
    public_key: bytes


@dataclass(frozen=True)
class ClusterConfig:
    parties: tuple[Peer, ...]
    dealer: Peer | None
    timeout: float = 60.0
    frac_bits: int = 16
    directory: Path = Path(".")

    @property
    def n_parties(self) -> int:
        return len(self.parties)

    @property
    def dealer_id(self) -> int:
        return self.n_parties

    def mesh_peers(self) -> dict[int, tuple[str, bytes]]:
        """Peer id -> (address, public key) for every mesh member (the dealer is n_parties)."""
        peers = {p.id: (p.address, p.public_key) for p in self.parties}
        if self.dealer is not None:
            peers[self.dealer_id] = (self.dealer.address, self.dealer.public_key)
        return peers

    def default_key_file(self, member_id: int) -> Path:
        name = "dealer" if member_id == self.dealer_id else f"party{member_id}"
        return self.directory / "keys" / f"{name}.key_secret"


def _peer(entry: dict, where: str) -> Peer:
    try:
        return Peer(int(entry.get("id", -1)), str(entry["address"]),
                    str(entry["public_key"]).encode())
    except KeyError as exc:
        raise ValueError(f"{where}: missing {exc.args[0]!r}") from None


def load_config(path: str | Path) -> ClusterConfig:
    """Read and validate a cluster file; errors name the file and the problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    parties = tuple(sorted((_peer(e, f"{path} [[party]]") for e in raw.get("party", [])),
                           key=lambda p: p.id))
    if len(parties) < 2:
        raise ValueError(f"{path}: needs at least two [[party]] entries")
    if [p.id for p in parties] != list(range(len(parties))):
        raise ValueError(f"{path}: party ids must be 0..{len(parties) - 1} without gaps, got "
                         f"{[p.id for p in parties]}")
    dealer = _peer({**raw["dealer"], "id": len(parties)}, f"{path} [dealer]") \
        if "dealer" in raw else None
    members = list(parties) + ([dealer] if dealer else [])
    addresses = [m.address for m in members]
    for address in set(addresses):
        if addresses.count(address) > 1:
            raise ValueError(f"{path}: address {address} is used by more than one member")
    keys = [m.public_key for m in members]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: two members share a public key")
    for m in members:
        if len(m.public_key) != 40:
            raise AuthError(f"{path}: member {m.id}'s public_key is not a 40-character z85 key")
    return ClusterConfig(parties, dealer, float(raw.get("timeout", 60.0)),
                         int(raw.get("frac_bits", 16)), path.parent)


def write_config(path: str | Path, addresses: list[str], public_keys: list[bytes],
                 timeout: float = 60.0, frac_bits: int = 16, with_dealer: bool = True) -> None:
    """Write a cluster file; with a dealer, the last address and key are the dealer's."""
    n_parties = len(addresses) - (1 if with_dealer else 0)
    lines = [f"timeout = {timeout}", f"frac_bits = {frac_bits}", ""]
    for pid, (address, key) in enumerate(zip(addresses[:n_parties], public_keys[:n_parties])):
        lines += ["[[party]]", f"id = {pid}", f'address = "{address}"',
                  f'public_key = "{key.decode()}"', ""]
    if with_dealer:
        lines += ["[dealer]", f'address = "{addresses[-1]}"',
                  f'public_key = "{public_keys[-1].decode()}"']
    Path(path).write_text("\n".join(lines) + "\n")
