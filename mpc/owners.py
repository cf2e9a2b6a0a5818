"""Outsourced computation: data owners who are not computing parties.

An owner (say a hospital) secret-shares its arrays to the parties and may wait for results
revealed to it alone; the parties never see the owner's data or the owner's results.

    owner                                      each party p
    seq 1: manifest (names, shapes)     ->     input_from(ctx, "hospital_a", "x")
    seq 2, 3, ...: share p of each array ->    (the first call takes them all)
                                        <-     seq ACK: "got them" (now the owner may go)
                                        <-     reveal_to_owner(ctx, "hospital_a", {...}):
                                               manifest, then party p's share of each
    seq ACK: "got them"                 ->     (the party waits for it: delivery is known)

Shares come from the owner's cryptographic generator, in the layout of the cluster's
protocol (its owner_shares: with the dealer protocol party 0 gets x - sum(others), the
others uniform ring elements); each party answers with one array per result (the
protocol's owner_output), and the owner adds them. Owner messages have their own sequence
numbers (the owner is outside the parties' lock-step counter). The owner's side runs over
any Transport (the launcher wires ZeroMQ; `mpc share` on the command line).
"""

from __future__ import annotations

import json

import numpy as np

from mpc.prg import Prg, new_seed
from mpc.protocols import protocol_class
from mpc.ring import DTYPE
from mpc.tensor import SecretTensor

ACK = 1 << 40  # the owner's acknowledgement: far above its input messages' numbers
MAX_MANIFEST = 1 << 16  # bytes


def _manifest(arrays: dict) -> np.ndarray:
    entries = [[name, list(a.shape)] for name, a in arrays.items()]
    return np.frombuffer(json.dumps(entries).encode(), dtype=np.uint8)


def _parse_manifest(raw: np.ndarray, who: str) -> dict[str, tuple[int, ...]]:
    """name -> shape from a peer's manifest; ValueError on anything malformed."""
    try:
        if raw.size > MAX_MANIFEST:
            raise ValueError("too long")
        entries = json.loads(bytes(raw).decode())
        out = {str(name): tuple(int(d) for d in shape) for name, shape in entries}
        if any(d < 0 for shape in out.values() for d in shape) or len(out) != len(entries):
            raise ValueError("bad shapes or repeated names")
        return out
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed manifest from {who}: {exc}") from None


def _owner_id(ctx, owner: str) -> int:
    if owner not in ctx.owners:
        raise ValueError(f"no owner named {owner!r} in this cluster (owners: "
                         f"{sorted(ctx.owners) or 'none'})")
    return ctx.owners[owner]


def input_from(ctx, owner: str, name: str) -> SecretTensor:
    """[x] for the array `name` that owner `owner` shared with `mpc share`. The first call
    for an owner waits for it (up to the cluster's owner_timeout), takes all its arrays
    and confirms receipt, after which the owner may go. Rounds: 1 for an owner's first
    array, 0 after. Comm: received only, 8 bytes per element."""
    oid = _owner_id(ctx, owner)
    if owner not in ctx.owner_inputs:
        with ctx.operation("owner-input"):
            raw = ctx.transport.recv(oid, 1, "owner-manifest", np.uint8, None)
            shapes = _parse_manifest(raw, f"owner {owner}")
            ctx.owner_inputs[owner] = {
                key: ctx.transport.recv(oid, 2 + i, "owner-input", DTYPE,
                                        ctx.protocol.owner_share_shape(shape), is_round=False)
                for i, (key, shape) in enumerate(shapes.items())}
            ctx.transport.send(oid, ACK, "owner-ack", np.zeros(0, dtype=np.uint8))
    arrays = ctx.owner_inputs[owner]
    if name not in arrays:
        raise ValueError(f"owner {owner} shared no array named {name!r} "
                         f"(it shared {sorted(arrays)})")
    return SecretTensor(ctx, arrays[name])


def reveal_to_owner(ctx, owner: str, tensors: dict[str, SecretTensor]) -> None:
    """Send each party's shares of `tensors` to owner `owner` only, and wait until the
    owner confirms it has them all. One call per owner and run (the owner's `mpc share
    --receive` takes one batch). Rounds: 1. Comm: 8 bytes per element to the owner."""
    oid = _owner_id(ctx, owner)
    if owner in ctx.owners_answered:
        raise ValueError(f"results were already revealed to owner {owner}: pass them all "
                         f"in one reveal_to_owner call")
    ctx.owners_answered.add(owner)
    ctx.check_range()
    outputs = {k: np.ascontiguousarray(ctx.protocol.owner_output(t.share), dtype=DTYPE)
               for k, t in tensors.items()}
    with ctx.operation("owner-output"):
        ctx.transport.send(oid, 1, "owner-manifest", _manifest(outputs))
        for i, out in enumerate(outputs.values()):
            ctx.transport.send(oid, 2 + i, "owner-output", out)
        ctx.transport.recv(oid, ACK, "owner-ack", np.uint8, (0,))


def encode_inputs(fixed, arrays: dict) -> dict[str, np.ndarray]:
    """The owner's arrays as fixed point; ValueError naming the array for NaN, infinities
    or values out of range, TypeError for what is not real numbers (complex, strings,
    objects) (called before connecting: bad data never leaves)."""
    encoded = {}
    for name, a in arrays.items():
        try:
            encoded[name] = fixed.encode(a)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"array {name!r}: {exc}") from None
    return encoded


def owner_session(transport, n_parties: int, fixed, encoded: dict[str, np.ndarray],
                  receive: bool, protocol: str = "dealer") -> dict[str, np.ndarray] | None:
    """The owner's side: share the `encoded` arrays (see encode_inputs) with parties
    0..n-1 in the layout of `protocol` and wait until each confirms; with `receive`, then
    wait for the results revealed to this owner and return them decoded."""
    manifest = _manifest(encoded)
    prg = Prg(new_seed())
    split = protocol_class(protocol).owner_shares
    shares = {p: {} for p in range(n_parties)}
    for k, (name, x) in enumerate(encoded.items()):
        for p, s in enumerate(split(prg, k, x, n_parties)):
            shares[p][name] = s
    for p in range(n_parties):
        transport.send(p, 1, "owner-manifest", manifest)
        for i, s in enumerate(shares[p].values()):
            transport.send(p, 2 + i, "owner-input", s)
    for p in range(n_parties):  # the parties have it all: going away loses nothing now
        transport.recv(p, ACK, "owner-ack", np.uint8, (0,))
    if not receive:
        return None
    return _receive(transport, n_parties, fixed)


def _receive(transport, n_parties: int, fixed) -> dict[str, np.ndarray]:
    """Wait for the parties' results, check they agree on what they send, add the shares."""
    manifests = [transport.recv(p, 1, "owner-manifest", np.uint8, None)
                 for p in range(n_parties)]
    shapes = _parse_manifest(manifests[0], "party 0")
    for p in range(1, n_parties):
        if _parse_manifest(manifests[p], f"party {p}") != shapes:
            raise ValueError(f"parties 0 and {p} announced different results: "
                             f"{shapes} and {_parse_manifest(manifests[p], f'party {p}')}")
    out = {}
    for i, (name, shape) in enumerate(shapes.items()):
        total = np.zeros(shape, dtype=DTYPE)
        for p in range(n_parties):
            total += transport.recv(p, 2 + i, "owner-output", DTYPE, shape)
        out[name] = fixed.decode(total)
    for p in range(n_parties):
        transport.send(p, ACK, "owner-ack", np.zeros(0, dtype=np.uint8))
    return out
