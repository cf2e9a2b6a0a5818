"""The frame codec: exact round trips, and hostile input only ever gives ProtocolError."""

import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from net import ProtocolError
from net import wire

DTYPES = list(wire.DTYPES.values())
SHAPES = [(), (0,), (1,), (7,), (2, 3), (0, 5), (3, 0, 2), (1,) * wire.MAX_NDIM]
U64_EDGES = [0, 1, 2**63, 2**64 - 1]


def roundtrip(sender, seq, op, array):
    header, payload = wire.encode(sender, seq, op, array)
    return wire.decode(header, bytes(payload))


def header(*, magic=wire.MAGIC, version=wire.VERSION, sender=1, seq=2, code=7, op=b"op",
           shape=(3,)):
    """A header with any field set by hand (code 7 is uint64)."""
    return b"".join([struct.pack("<4sBHQBBB", magic, version, sender, seq, code, len(shape),
                                 len(op)), op, *(struct.pack("<Q", d) for d in shape)])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_roundtrip_every_dtype_and_shape(dtype, shape):
    array = (np.arange(int(np.prod(shape))) % 3).astype(dtype).reshape(shape)
    sender, seq, op, got = roundtrip(65535, 2**64 - 1, "mul/open ✓", array)
    assert (sender, seq, op) == (65535, 2**64 - 1, "mul/open ✓")
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_array_equal(got, array)


@given(st.lists(st.sampled_from(U64_EDGES) | st.integers(0, 2**64 - 1), max_size=50))
def test_uint64_values_survive(values):
    array = np.array(values, dtype=np.uint64)
    np.testing.assert_array_equal(roundtrip(0, 0, "x", array)[3], array)


@given(arrays(st.sampled_from(DTYPES), array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                    max_side=4)))
def test_any_array_survives(array):
    got = roundtrip(3, 9, "op", array)[3]
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


def test_noncontiguous_and_big_endian_arrays_are_sent_as_values():
    strided = np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2]
    big_endian = np.arange(5, dtype=">u8")
    for array in (strided, big_endian, strided.T):
        got = roundtrip(0, 0, "x", array)[3]
        assert got.dtype.isnative
        np.testing.assert_array_equal(got, array)


def test_decode_is_zero_copy():
    header_bytes, payload = wire.encode(0, 0, "x", np.arange(4, dtype=np.uint64))
    buffer = bytearray(payload)
    array = wire.decode(header_bytes, buffer)[3]
    buffer[:8] = b"\xff" * 8
    assert array[0] == 2**64 - 1


def test_encode_refuses_what_cannot_be_sent():
    with pytest.raises(TypeError, match="complex128"):
        wire.encode(0, 0, "x", np.zeros(2, complex))
    with pytest.raises(ValueError, match="longer than 64"):
        wire.encode(0, 0, "x" * 65, np.zeros(2))
    with pytest.raises(ValueError, match="dimensions"):
        wire.encode(0, 0, "x", np.zeros((1,) * 9))


PAYLOAD = bytes(24)


@pytest.mark.parametrize("head, payload, message", [
    (header()[:10], PAYLOAD, "truncated header"),
    (header()[:-1], PAYLOAD, "truncated header"),
    (header() + b"\0", PAYLOAD, "trailing junk"),
    (header(magic=b"HTTP"), PAYLOAD, "bad magic"),
    (header(version=9), PAYLOAD, "bad magic/version"),
    (header(code=200), PAYLOAD, "unknown dtype code 200"),
    (header(shape=(1,) * 9), bytes(8), "ndim 9"),
    (header(op=b"x" * 65), PAYLOAD, "op tag length 65"),
    (header(op=b"\xff\xfe"), PAYLOAD, "not valid utf-8"),
    (header(), PAYLOAD + b"\0", "payload is 25 bytes"),
    (header(), PAYLOAD[:-8], "payload is 16 bytes"),
    (header(shape=(0, 2**64 - 1)), b"", "impossibly large"),
])
def test_malformed_messages_are_protocol_errors(head, payload, message):
    with pytest.raises(ProtocolError, match=message):
        wire.decode(head, payload)


@pytest.mark.parametrize("shape", [(2**40, 2**40), (2**61,), (2**20,) * 8, (2**64 - 1,)])
def test_huge_declared_shape_is_refused_without_allocating(shape):
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            wire.decode(header(shape=shape), bytes(64))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000


@settings(max_examples=300)
@given(st.binary(max_size=120), st.binary(max_size=80))
def test_random_bytes_only_give_protocol_errors(head, payload):
    try:
        _, _, _, array = wire.decode(head, payload)
    except ProtocolError:
        return
    assert array.nbytes == len(payload)


VALID = wire.encode(7, 123456789, "open", np.arange(6, dtype=np.int32).reshape(2, 3))


@settings(max_examples=500)
@given(st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert"]),
                          st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(-4, 4))
def test_mutated_headers_only_give_protocol_errors(edits, payload_delta):
    head = bytearray(VALID[0])
    for kind, position, value in edits:
        position %= len(head) + 1
        if kind == "flip" and position < len(head):
            head[position] ^= value or 1
        elif kind == "cut":
            del head[position:]
        else:
            head[position:position] = bytes([value])
    payload = bytes(VALID[1])
    payload = payload[:len(payload) + payload_delta] if payload_delta < 0 \
        else payload + bytes(payload_delta)
    try:
        _, _, _, array = wire.decode(bytes(head), payload)
    except ProtocolError:
        return
    assert array.nbytes == len(payload)
