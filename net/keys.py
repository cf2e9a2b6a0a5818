"""CURVE keys: generate, store and load them in the file format of
zmq.auth.create_certificates (`name.key` public, `name.key_secret` secret, mode 0600)."""

from __future__ import annotations

import datetime
import os
import struct
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from net.errors import AuthError

_BANNER = "#   ****  Generated on {} by pyzmq  ****\n#   ZeroMQ CURVE {} Certificate\n\n"


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh (public, secret) CURVE key pair, both z85-encoded (40 bytes)."""
    return zmq.curve_keypair()


def write_keypair(directory: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Generate a key pair and write `name.key` and `name.key_secret` (readable by the
    owner only, from the moment it exists). Returns (public_file, secret_file)."""
    public, secret = generate_keypair()
    base = Path(directory) / name
    files = (base.with_name(name + ".key"), base.with_name(name + ".key_secret"))
    _write(files[0], "Public", public, None)
    _write(files[1], "**Secret**", public, secret)
    return files


def _write(path: Path, kind: str, public: bytes, secret: bytes | None) -> None:
    lines = [_BANNER.format(datetime.datetime.now(), kind), "metadata\n", "curve\n",
             f'    public-key = "{public.decode()}"\n']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"\n')
    mode = 0o644 if secret is None else 0o600
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    if secret is not None:
        os.fchmod(fd, mode)  # the file may have existed with a looser mode
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(lines)


def load_public(path: str | os.PathLike) -> bytes:
    """The z85 public key stored in a `.key` (or `.key_secret`) file."""
    try:
        public, _ = zmq.auth.load_certificate(path)
    except ValueError as e:
        raise AuthError(f"{path}: {e}") from None
    check_key(public, str(path))
    return public


def load_secret(path: str | os.PathLike,
                expected_public: bytes | None = None) -> tuple[bytes, bytes]:
    """(public, secret) from a `.key_secret` file. Raises AuthError naming the file if it
    holds no secret key, if the two keys do not belong together, or if the public key is
    not `expected_public` (the file is not the one the config says this party uses)."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except ValueError as e:
        raise AuthError(f"{path}: {e}") from None
    if secret is None:
        raise AuthError(f"{path} holds no secret key (is it the public .key file?)")
    check_key(public, str(path))
    check_key(secret, str(path))
    if zmq.curve_public(secret) != public:
        raise AuthError(f"{path}: the public key does not belong to the secret key")
    if expected_public is not None and public != expected_public:
        raise AuthError(f"{path} holds public key {public.decode()}, but the config expects "
                        f"{expected_public.decode()}")
    return public, secret


def check_key(key: bytes, owner: str) -> None:
    """Raise AuthError unless `key` is a z85-encoded 32-byte CURVE key."""
    try:
        ok = isinstance(key, bytes) and len(z85.decode(key)) == 32
    except (ValueError, KeyError, struct.error):
        ok = False
    if not ok:
        raise AuthError(f"{owner}: {key!r} is not a z85-encoded CURVE key (40 characters)")
