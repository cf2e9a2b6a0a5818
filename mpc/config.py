"""The cluster file: every party's (and the dealer's) address and public key.

    # cluster.toml
    protocol = "dealer"     # or "replicated": 3 parties, no [dealer] entry
    timeout = 60.0          # seconds a party waits for a peer before giving up
    heartbeat = 10.0        # seconds of silence (no ping answered) after which a link is
                            # dead (default min(timeout / 2, 10))
    mailbox_bytes = 1073741824   # bytes of early messages one peer may have waiting (1 GiB)
    frac_bits = 16
    [[party]]
    id = 0
    address = "tcp://10.0.0.1:7000"
    public_key = "..."      # z85, from `mpc keys`
    [dealer]
    address = "tcp://10.0.0.9:7100"
    public_key = "..."
    [[owner]]               # optional: data owners that are not computing parties
    name = "hospital_a"
    address = "tcp://10.0.1.5:7200"
    public_key = "..."
    owner_timeout = 600.0   # seconds the parties wait for an owner's data (top level)

Each process also needs its own secret key file, by default `keys/party<ID>.key_secret`
(or `keys/dealer.key_secret`, `keys/<owner name>.key_secret`) next to the config.
Mesh ids: parties 0..n-1, the dealer n, owners n+1, n+2, ... in file order. Owners link
to the parties only, and the parties do not wait for them to start: an owner comes,
shares its data (mpc share), perhaps waits for a result, and goes.
"""

from __future__ import annotations

import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path

from net import AuthError
from net.mailbox import MAX_BYTES


@dataclass(frozen=True)
class Peer:
    id: int
    address: str
    public_key: bytes
    name: str = ""


@dataclass(frozen=True)
class ClusterConfig:
    parties: tuple[Peer, ...]
    dealer: Peer | None
    timeout: float = 60.0
    frac_bits: int = 16
    directory: Path = Path(".")
    owners: tuple[Peer, ...] = ()
    owner_timeout: float = 600.0
    heartbeat: float | None = None
    mailbox_bytes: int = MAX_BYTES
    source: Path | None = None   # the file it was read from, for error messages
    protocol: str = "dealer"

    @property
    def n_parties(self) -> int:
        return len(self.parties)

    @property
    def dealer_id(self) -> int:
        return self.n_parties

    def mesh_peers(self) -> dict[int, tuple[str, bytes]]:
        """Peer id -> (address, public key) for every mesh member (the dealer is n_parties)."""
        members = list(self.parties) + list(self.owners)
        if self.dealer is not None:
            members.append(self.dealer)
        return {m.id: (m.address, m.public_key) for m in members}

    def links(self, member_id: int) -> list[int]:
        """Whom a member talks to: a party to everyone, the dealer and owners to parties."""
        if member_id < self.n_parties:
            return sorted(self.mesh_peers())
        return list(range(self.n_parties)) + [member_id]

    def member_names(self) -> dict[int, str]:
        """How messages call the members that are not parties: "dealer", "owner <name>"."""
        names = {o.id: f"owner {o.name}" for o in self.owners}
        if self.dealer is not None:
            names[self.dealer_id] = "dealer"
        return names

    def owner_ids(self) -> dict[str, int]:
        return {o.name: o.id for o in self.owners}

    def owner(self, name: str) -> Peer:
        for o in self.owners:
            if o.name == name:
                return o
        raise ValueError(f"no owner named {name!r} in the cluster file (owners: "
                         f"{[o.name for o in self.owners] or 'none'})")

    def default_key_file(self, member_id: int) -> Path:
        names = {self.dealer_id: "dealer", **{o.id: o.name for o in self.owners}}
        name = names.get(member_id, f"party{member_id}")
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
    protocol = _protocol(raw, len(parties), dealer is not None, path)
    owners = tuple(_owner(e, len(parties) + 1 + i, path)
                   for i, e in enumerate(raw.get("owner", [])))
    names = [o.name for o in owners]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: two [[owner]] entries have the same name")
    members = list(parties) + ([dealer] if dealer else []) + list(owners)
    seen: dict[tuple[str, int], str] = {}
    for m in members:
        endpoint = _endpoint(m.address, path)
        if endpoint in seen:
            raise ValueError(f"{path}: address {m.address} is used by more than one member "
                             f"(the same host and port as {seen[endpoint]})")
        seen[endpoint] = m.address
    keys = [m.public_key for m in members]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: two members share a public key")
    for m in members:
        if len(m.public_key) != 40:
            raise AuthError(f"{path}: member {m.id}'s public_key is not a 40-character z85 key")
    return ClusterConfig(parties, dealer, float(raw.get("timeout", 60.0)),
                         int(raw.get("frac_bits", 16)), path.parent, owners,
                         float(raw.get("owner_timeout", 600.0)),
                         float(raw["heartbeat"]) if "heartbeat" in raw else None,
                         int(raw.get("mailbox_bytes", MAX_BYTES)), path, protocol)


def _protocol(raw: dict, n_parties: int, has_dealer: bool, path: Path) -> str:
    """The file's protocol, checked against its members (ValueError naming the file)."""
    from mpc.protocols import check_settings, protocol_class
    name = str(raw.get("protocol", "dealer"))
    try:
        check_settings(name, n_parties)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if has_dealer and not protocol_class(name).uses_dealer:
        raise ValueError(f"{path}: a [dealer] entry, but the {name} protocol has no dealer")
    return name


def _endpoint(address: str, path: Path) -> tuple[str, int]:
    """(IP, port) of a "tcp://host:port" address, so that localhost:7000 and
    127.0.0.1:7000 count as one; ValueError naming the address if it is malformed."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not address.startswith("tcp://") or not host or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise ValueError(f"{path}: address {address!r} is not of the form tcp://host:port")
    try:
        host = socket.gethostbyname(host.strip("[]"))
    except OSError:
        pass  # unresolvable here (another site's name): compare as written
    return host, int(port)


def _owner(entry: dict, member_id: int, path: Path) -> Peer:
    name = str(entry.get("name", ""))
    if not (name.replace("_", "").replace("-", "").isalnum() and name.isascii()):
        raise ValueError(f"{path} [[owner]]: name {name!r} must be letters, digits, - or _ "
                         f"(it names the owner's key file)")
    peer = _peer({**entry, "id": member_id}, f"{path} [[owner]] {name}")
    return Peer(peer.id, peer.address, peer.public_key, name)


def write_config(path: str | Path, addresses: list[str], public_keys: list[bytes],
                 timeout: float = 60.0, frac_bits: int = 16, with_dealer: bool = True,
                 owners: list[str] = (), heartbeat: float | None = None,
                 protocol: str = "dealer") -> None:
    """Write a cluster file. Addresses and keys list the parties, then the dealer (if
    any), then the owners named in `owners`."""
    n_parties = len(addresses) - (1 if with_dealer else 0) - len(owners)
    lines = [f'protocol = "{protocol}"', f"timeout = {timeout}", f"frac_bits = {frac_bits}"]
    lines += [f"heartbeat = {heartbeat}", ""] if heartbeat is not None else [""]
    for pid, (address, key) in enumerate(zip(addresses[:n_parties], public_keys[:n_parties])):
        lines += ["[[party]]", f"id = {pid}", f'address = "{address}"',
                  f'public_key = "{key.decode()}"', ""]
    if with_dealer:
        lines += ["[dealer]", f'address = "{addresses[n_parties]}"',
                  f'public_key = "{public_keys[n_parties].decode()}"', ""]
    first_owner = len(addresses) - len(owners)
    for name, address, key in zip(owners, addresses[first_owner:], public_keys[first_owner:]):
        lines += ["[[owner]]", f'name = "{name}"', f'address = "{address}"',
                  f'public_key = "{key.decode()}"', ""]
    Path(path).write_text("\n".join(lines))
