"""Recipes for correlated randomness: what a provider makes for each kind of item.

An item has *free* components (uniform ring elements: every party's share comes from its
own seeded stream) and *derived* components (a public function of the free values, such
as c = a * b). A seed-compressed provider gives every party but one its derived shares
from its stream too, and sends that party one correction per derived tensor.
The dealer and the insecure in-process provider both build items from these recipes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np

from mpc import kernels
from mpc.protocols.dealer import kernels as dealer_kernels
from mpc.ring import DTYPE
from mpc.shapes import Shape, broadcast_shape, conv2d_shape, matmul_shape

MAX_ITEM_ELEMENTS = 1 << 31  # refuse absurd requests instead of allocating them


@dataclass(frozen=True)
class ItemSpec:
    """What to make: a kind, the shapes of the free components, and public parameters."""

    kind: str
    shapes: tuple[Shape, ...]
    params: dict = field(default_factory=dict)

    @cached_property
    def tag(self) -> bytes:
        """8 bytes that name this spec: item streams are keyed by (number, tag), and the
        dealer's speculative corrections carry it so a wrong guess is recognised."""
        return hashlib.sha256(self._encoded).digest()[:8]

    @cached_property
    def _encoded(self) -> bytes:  # specs are immutable: encode once (hot in training loops)
        return json.dumps({"kind": self.kind, "shapes": [list(s) for s in self.shapes],
                           "params": self.params}, sort_keys=True).encode()

    def to_bytes(self) -> np.ndarray:
        return np.frombuffer(self._encoded, dtype=np.uint8)

    @staticmethod
    def from_bytes(raw: np.ndarray) -> "ItemSpec":
        """Parse and validate a request; raises ValueError on anything malformed."""
        try:
            obj = json.loads(bytes(raw).decode())
            shapes = tuple(tuple(int(d) for d in s) for s in obj["shapes"])
            spec = ItemSpec(str(obj["kind"]), shapes,
                            dict(obj.get("params", {})))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed correlated-randomness request: {exc}") from None
        recipe(spec)  # validates kind, shapes and parameters
        return spec


@dataclass(frozen=True)
class Recipe:
    """Free and derived component shapes and the function making the derived values.

    Components are arithmetic shares (summed mod 2^64) unless listed in `free_xor` /
    `derived_xor` (XOR shares of bit strings). A component needed only in its low `bits`
    is shared modulo 2^bits, so its stream words are masked and its correction travels in
    a narrower dtype. A derived component in `narrow` stays in that dtype end to end: it
    is drawn from the stream in it (fewer AES blocks) and handed to the protocol in it.
    `make_into(free, others, outs)`, where given, writes the corrections (the derived
    values minus `others`, the sum of the other parties' derived shares) straight into
    `outs` (wire-dtype views of the dealer's message) in place of `make`, the sums of the
    free shares (`free`: per component, every party's share) and the subtractions.
    """

    free: tuple[Shape, ...]
    derived: tuple[Shape, ...]
    make: Callable[[list[np.ndarray]], list[np.ndarray]]
    derived_bits: tuple[int, ...] = ()
    free_bits: tuple[int, ...] = ()
    free_xor: frozenset = frozenset()
    derived_xor: frozenset = frozenset()
    narrow: frozenset = frozenset()
    make_into: Callable | None = None

    def bits(self, i: int) -> int:
        return self.derived_bits[i] if self.derived_bits else 64

    def reduce(self, i: int, value: np.ndarray) -> np.ndarray:
        """Derived component i modulo 2^bits (a no-op at 64 bits), in place."""
        return _low_bits(value, self.bits(i))

    def reduce_free(self, i: int, value: np.ndarray) -> np.ndarray:
        return _low_bits(value, self.free_bits[i] if self.free_bits else 64)

    def draw_dtype(self, i: int) -> np.dtype:
        """The dtype derived component i is drawn and handed out in."""
        return self.wire_dtype(i) if i in self.narrow else np.dtype(DTYPE)

    def wire_dtype(self, i: int) -> np.dtype:
        """The narrowest unsigned dtype that holds derived component i's correction."""
        bits = self.bits(i)
        return np.dtype(np.uint8 if bits <= 8 else np.uint16 if bits <= 16
                        else np.uint32 if bits <= 32 else np.uint64)


def _low_bits(value: np.ndarray, bits: int) -> np.ndarray:
    """value modulo 2^bits, in place (value is the caller's own fresh array)."""
    if bits < 8 * value.dtype.itemsize:
        value &= value.dtype.type((1 << bits) - 1)
    return value


def _conv_params(params: dict) -> tuple[Shape, Shape]:
    return tuple(params.get("stride", (1, 1))), tuple(params.get("padding", (0, 0)))


_RECIPES: dict[bytes, Recipe] = {}  # by encoded spec: a training loop asks for few kinds
MAX_CACHED = 4096


def recipe(spec: ItemSpec) -> Recipe:
    """The recipe for `spec` (recipes are immutable: made once per distinct spec); raises
    ValueError for unknown kinds or bad shapes."""
    found = _RECIPES.get(spec._encoded)
    if found is None:
        if len(_RECIPES) >= MAX_CACHED:
            _RECIPES.clear()
        found = _RECIPES[spec._encoded] = _make_recipe(spec)
    return found


def _make_recipe(spec: ItemSpec) -> Recipe:
    kind, shapes, params = spec.kind, spec.shapes, spec.params
    arity = {"mul": 2, "matmul": 2, "conv2d": 2, "square": 1, "trunc": 1, "ltz": 1,
             "trunc-product": 2}
    if kind not in arity:
        raise ValueError(f"unknown correlated-randomness kind {kind!r}")
    if len(shapes) != arity[kind] or any(d < 0 for s in shapes for d in s):
        raise ValueError(f"{kind}: bad shapes {shapes}")
    if sum(math.prod(s) for s in shapes) > MAX_ITEM_ELEMENTS:
        raise ValueError(f"{kind}: request for {shapes} is larger than "
                         f"{MAX_ITEM_ELEMENTS} elements")
    if kind == "mul":
        return Recipe(shapes, (broadcast_shape(*shapes),), lambda v: [v[0] * v[1]])
    if kind == "matmul":
        return Recipe(shapes, (matmul_shape(*shapes),), lambda v: [kernels.matmul(v[0], v[1])])
    if kind == "conv2d":
        stride, padding = _conv_params(params)
        out = conv2d_shape(shapes[0], shapes[1], stride, padding)
        return Recipe(shapes, (out,),
                      lambda v: [kernels.conv2d(v[0], v[1], stride=stride, padding=padding)])
    if kind == "square":
        return Recipe(shapes, shapes, lambda v: [v[0] * v[0]])
    if kind == "ltz":
        return _ltz_recipe(shapes, bool(params.get("select", False)))
    if kind == "trunc-product":
        return _trunc_product_recipe(shapes, params)
    return _trunc_recipe(shapes, int(params["frac_bits"]))


LTZ_REST_BITS = 62  # the AND triples of tree levels 1..5 (32+16+8+4+2 bits) share one word


def _ltz_recipe(shapes, select: bool) -> Recipe:
    """Everything mpc.protocols.dealer.compare.less_than_zero needs, for one flat tensor.

    Free: r (arithmetic mask), A0, Ar, B0, Br (XOR: AND-triple inputs, level 0 and levels
    1-5 packed in 62 bits), beta (XOR, one bit) [and u (arithmetic) with `select`].
    Derived: the bits of r (XOR), C0 = A0 & B0, Cr = Ar & Br (XOR), beta as an
    arithmetic 0/1 [and u * beta].
    """
    shape = shapes[0]
    free = [shape] * (7 if select else 6)
    free_bits = (64, 64, LTZ_REST_BITS, 64, LTZ_REST_BITS, 1) + ((64,) if select else ())
    derived_bits = (64, 64, LTZ_REST_BITS, 64) + ((64,) if select else ())

    def make(v):
        r, a0, ar, b0, br, beta = v[:6]
        out = [r, a0 & b0, ar & br, beta]
        return out + [v[6] * beta] if select else out
    return Recipe(tuple(free), tuple([shape] * len(derived_bits)), make, derived_bits,
                  free_bits, frozenset({1, 2, 3, 4, 5}), frozenset({0, 1, 2}))


def _trunc_recipe(shapes, frac_bits: int) -> Recipe:
    """For a mask r: t = 2^(63-f) m - ((r mod 2^63) >> f) and m = r >> 63, the latter
    needed only modulo 2^f (mpc.protocols.dealer.truncation uses it times 2^(64-f))."""
    if not 1 <= frac_bits < 62:
        raise ValueError(f"trunc: frac_bits {frac_bits} out of range 1..61")

    def make_into(free, others, outs):
        dealer_kernels.trunc_corrections(_pair(free[0]), frac_bits, *others, *outs)
    return Recipe(shapes, shapes * 2, lambda v: list(dealer_kernels.trunc_pair(v[0], frac_bits)),
                  (64, frac_bits), narrow=frozenset({1}), make_into=make_into)


def _frac_bits(kind: str, params: dict) -> int:
    try:
        frac_bits = int(params["frac_bits"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{kind}: needs an integer frac_bits") from None
    if not 1 <= frac_bits < 62:
        raise ValueError(f"{kind}: frac_bits {frac_bits} out of range 1..61")
    return frac_bits


def _trunc_product_recipe(shapes, params: dict) -> Recipe:
    """A Beaver triple fused with the exact truncation of its product
    (mpc.protocols.dealer.truncation.truncated_product): free a, b and q (q of the
    product's shape, flat), derived the truncation pair (t, m; trunc_pair) of the mask
    r = q - a o b - 2^62. The parties never need c = a o b or r alone, only c + r + 2^62
    = q, which therefore comes from the streams: r is uniform because q is, and
    independent of a and b."""
    op = params.get("op")
    frac_bits = _frac_bits("trunc-product", params)
    if op == "mul":
        out = broadcast_shape(*shapes)
        same = shapes[0] == shapes[1]
        product = None if same else (lambda a, b: a * b)
    elif op == "matmul":
        out, product = matmul_shape(*shapes), kernels.matmul
    elif op == "conv2d":
        stride, padding = _conv_params(params)
        out = conv2d_shape(shapes[0], shapes[1], stride, padding)
        product = functools.partial(kernels.conv2d, stride=stride, padding=padding)
    else:
        raise ValueError(f"trunc-product: unknown op {op!r}")
    size = (math.prod(out),)

    def make(v):
        a, b, q = v
        if product is None:  # same-shape mul: the product is formed inside the pass
            return list(dealer_kernels.trunc_pair_product(q, a, frac_bits, b))
        return list(dealer_kernels.trunc_pair_product(q, product(a, b), frac_bits))

    def make_into(free, others, outs):
        a, b, q = free
        if product is None:  # a, b and q summed inside the pass too
            dealer_kernels.trunc_corrections(_pair(q), frac_bits, *others, *outs,
                                             a=_pair(a), b=_pair(b))
        else:
            dealer_kernels.trunc_corrections(_pair(q), frac_bits, *others, *outs,
                                             c=product(combine_shares(a), combine_shares(b)))
    return Recipe(tuple(shapes) + (size,), (size, size), make, (64, frac_bits),
                  narrow=frozenset({1}), make_into=make_into)


def _pair(shares: list) -> tuple:
    """Shares as two: the first, and the sum of the others (consumed)."""
    return shares[0], combine_shares(shares[1:])


def derive_item(spec: ItemSpec, share_streams) -> list[np.ndarray]:
    """Dealer side: given each party's (free shares, derived shares or None for the
    corrected party), return that party's corrections (in their draw dtypes, views of
    derive_payload's buffer). Consumes the shares (sums go into their arrays)."""
    return unpack_corrections(recipe(spec), derive_payload(spec, share_streams), copy=False)


def derive_payload(spec: ItemSpec, share_streams, head: bytes = b"") -> np.ndarray:
    """derive_item with the corrections written straight into one byte buffer, which it
    returns: `head`, then each correction in its wire dtype (the low bits of the
    component)."""
    rec = recipe(spec)
    out = np.empty(len(head) + correction_bytes(rec), dtype=np.uint8)
    out[:len(head)] = np.frombuffer(head, np.uint8)
    views = _correction_views(rec, out[len(head):])
    others = [derived for _, derived in share_streams if derived is not None]
    if rec.make_into is not None:
        rec.make_into([[s[0][i] for s in share_streams] for i in range(len(rec.free))],
                      [combine_shares([o[i] for o in others], i in rec.derived_xor)
                       for i in range(len(rec.derived))], views)
        return out
    free_plain = [combine_shares([s[0][i] for s in share_streams], i in rec.free_xor)
                  for i in range(len(rec.free))]
    for i, value in enumerate(rec.make(free_plain)):
        xor = i in rec.derived_xor
        op, view = (np.bitwise_xor if xor else np.subtract), views[i]
        op(np.asarray(value, dtype=DTYPE), others[0][i], out=view, casting="unsafe")
        for share in others[1:]:
            op(view, share[i], out=view, casting="unsafe")
        _low_bits(view, rec.bits(i))
    return out


def pack_corrections(rec: Recipe, corrections: list[np.ndarray],
                     head: bytes = b"") -> np.ndarray:
    """`head`, then the corrected party's corrections, each in its wire dtype (the low
    bits of the component), as one byte buffer."""
    out = np.empty(len(head) + correction_bytes(rec), dtype=np.uint8)
    out[:len(head)] = np.frombuffer(head, np.uint8)
    for view, c in zip(_correction_views(rec, out[len(head):]), corrections):
        view[...] = c  # casts to the low bits
    return out


def _correction_views(rec: Recipe, raw: np.ndarray) -> list[np.ndarray]:
    """The corrections' places in a byte buffer, as arrays of their wire dtype and shape."""
    out, start = [], 0
    for i, shape in enumerate(rec.derived):
        dtype = rec.wire_dtype(i)
        nbytes = math.prod(shape) * dtype.itemsize
        out.append(raw[start:start + nbytes].view(dtype).reshape(shape))
        start += nbytes
    return out


def correction_bytes(rec: Recipe) -> int:
    return sum(math.prod(s) * rec.wire_dtype(i).itemsize
               for i, s in enumerate(rec.derived))


def unpack_corrections(rec: Recipe, raw: np.ndarray, copy: bool = True) -> list[np.ndarray]:
    """Inverse of pack_corrections: tensors of the derived shapes in their draw dtypes
    (uint64 but for `narrow` components), views of `raw` where the dtypes agree (maybe
    read-only: a protocol that updates a derived share in place checks first). With
    `copy`, an unaligned view is copied."""
    out = []
    for i, view in enumerate(_correction_views(rec, raw)):
        dtype = rec.draw_dtype(i)
        if view.dtype != dtype:
            view = view.astype(dtype)
        elif copy and not view.flags.aligned:
            view = view.copy()
        out.append(view)
    return out


def combine_shares(shares, xor: bool = False) -> np.ndarray:
    """The shared value: the sum of arithmetic shares, or the XOR of binary ones, summed
    into the first share when it is a writable unsigned array (the shares are the maker's
    own fresh draws; a narrow one sums modulo its dtype)."""
    first = shares[0]
    total = first if isinstance(first, np.ndarray) and first.dtype.kind == "u" and \
        first.flags.writeable else np.array(first, dtype=DTYPE)
    for s in shares[1:]:
        if xor:
            total ^= s
        else:
            total += s
    return total
