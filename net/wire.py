"""Frame codec: one message = a fixed-layout binary header + the raw array buffer.

No pickle: the header carries only integers and a short utf-8 tag, and the payload is the
array's bytes (little-endian). `decode` treats its input as hostile: every field is
checked, and the payload length is compared with the declared shape before anything is
built, so a peer cannot make this party allocate memory by lying about a size.

Header layout (little-endian):
    magic b"MPCN" | version u8 | sender u16 | seq u64 | dtype code u8 | ndim u8 |
    op length u8 | op (utf-8) | shape (ndim x u64)
"""

from __future__ import annotations

import math
import struct

import numpy as np

from net.errors import ProtocolError

MAGIC = b"MPCN"
VERSION = 1
MAX_OP_BYTES = 64
MAX_NDIM = 8

_FIXED = struct.Struct("<4sBHQBBB")
_DIM = struct.Struct("<Q")
MAX_HEADER = _FIXED.size + MAX_OP_BYTES + MAX_NDIM * _DIM.size
_MAX_NBYTES = np.iinfo(np.intp).max  # numpy refuses larger arrays, even with a zero dim

DTYPES = {code: np.dtype(name).newbyteorder("<") for code, name in enumerate(
    ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
     "float32", "float64"])}
_CODES = {dtype: code for code, dtype in DTYPES.items()}


def encode(sender: int, seq: int, op: str, array: np.ndarray) -> tuple[bytes, memoryview]:
    """Header bytes and a zero-copy view of the payload (a copy only if `array` is
    non-contiguous or not little-endian). Raises TypeError for an unsupported dtype and
    ValueError for out-of-range fields: those are bugs in the caller, not the peer."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("<"))
    if code is None:
        raise TypeError(f"dtype {array.dtype} cannot be sent; supported: "
                        f"{', '.join(str(d) for d in DTYPES.values())}")
    if array.ndim > MAX_NDIM:
        raise ValueError(f"array has {array.ndim} dimensions; at most {MAX_NDIM} can be sent")
    op_bytes = op.encode("utf-8")
    if len(op_bytes) > MAX_OP_BYTES:
        raise ValueError(f"op tag {op!r} is longer than {MAX_OP_BYTES} bytes")
    if not 0 <= sender < 2**16 or not 0 <= seq < 2**64:
        raise ValueError(f"sender {sender} or seq {seq} out of range")
    array = np.asarray(array, dtype=DTYPES[code], order="C")
    header = b"".join([_FIXED.pack(MAGIC, VERSION, sender, seq, code, array.ndim, len(op_bytes)),
                       op_bytes, *(_DIM.pack(d) for d in array.shape)])
    return header, memoryview(array.reshape(-1)).cast("B")


def decode(header: bytes, payload) -> tuple[int, int, str, np.ndarray]:
    """(sender, seq, op, array) from a header and a payload buffer, without copying: the
    array is a view of `payload` (writable if the buffer is). Raises ProtocolError for
    anything malformed."""
    header = memoryview(header).cast("B")
    if len(header) < _FIXED.size:
        raise ProtocolError(f"truncated header: {len(header)} bytes, need at least "
                            f"{_FIXED.size}")
    magic, version, sender, seq, code, ndim, op_len = _FIXED.unpack_from(header)
    if magic != MAGIC or version != VERSION:
        raise ProtocolError(f"bad magic/version {magic!r}/{version}, expected "
                            f"{MAGIC!r}/{VERSION}: not a message of this protocol")
    dtype = DTYPES.get(code)
    if dtype is None:
        raise ProtocolError(f"unknown dtype code {code}")
    if ndim > MAX_NDIM:
        raise ProtocolError(f"ndim {ndim} exceeds the maximum {MAX_NDIM}")
    if op_len > MAX_OP_BYTES:
        raise ProtocolError(f"op tag length {op_len} exceeds the maximum {MAX_OP_BYTES}")
    expected_len = _FIXED.size + op_len + ndim * _DIM.size
    if len(header) != expected_len:
        kind = "truncated" if len(header) < expected_len else "trailing junk in"
        raise ProtocolError(f"{kind} header: {len(header)} bytes, expected {expected_len}")
    try:
        op = str(header[_FIXED.size:_FIXED.size + op_len], "utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"op tag is not valid utf-8: {e}") from None
    shape = tuple(_DIM.unpack_from(header, _FIXED.size + op_len + i * _DIM.size)[0]
                  for i in range(ndim))
    # Python ints cannot overflow; check the size before numpy sees the shape.
    if math.prod(d or 1 for d in shape) * dtype.itemsize > _MAX_NBYTES:
        raise ProtocolError(f"declared shape {shape} of {dtype} is impossibly large")
    payload = memoryview(payload).cast("B")
    want = math.prod(shape) * dtype.itemsize
    if len(payload) != want:
        raise ProtocolError(f"payload is {len(payload)} bytes but shape {shape} of {dtype} "
                            f"needs {want}")
    return sender, seq, op, np.frombuffer(payload, dtype=dtype).reshape(shape)
