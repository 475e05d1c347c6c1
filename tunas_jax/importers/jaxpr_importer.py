"""Import a JAX / Flax callable as a network description, read from its jaxpr (no new dependency).

The callable takes one NHWC batch [1, H, W, C] (plus, for `import_function`,
extra arguments that are its weights) and is traced with
`jax.make_jaxpr` on shape-only inputs, so nothing is computed. Every value
derived from the batch is an activation; everything else (weights, closed-
over arrays, literals, arithmetic on them) is a constant and never a layer.
Activations are read channels-last: [1, H, W, C] -> [H, W, C], [1, C] ->
[1, 1, C], [1, T, C] -> [1, T, C].

Mapped primitives: conv_general_dilated (window_strides, explicit padding
given back as 'same' / 'valid' when it is exactly that, rhs_dilation,
feature_group_count; NHWC activations), dot_general (a constant right
operand: fully_connected on [1, 1, C], a 1x1 conv per position otherwise;
two activations: matmul), add / sub / mul / div / max / min, reduce_sum and
reduce_max over height and width (global pools), reduce_window_sum /
reduce_window_max (pools), concatenate, reshape-like primitives, logistic,
tanh; nested jaxprs (jit, custom_jvp_call, custom_vjp_call, remat,
closed_call) are followed. Elementwise arithmetic with constants is read
as the layers that produce it: a chain of per-channel affine ops (sub, mul,
add) is a batch norm, a lone add of a constant after a bias-free conv or
dense layer is its bias, scaling a sum-pool by a scalar is the average,
max(x, 0) is ReLU. Anything else is refused with the equation's index and
primitive.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from typing import Any

from search_spaces.errors import SpecError
from search_spaces.network import Shape
from tunas_jax.importers.graph import GraphBuilder, hwc_axis, to_hwc

ELEMENTWISE = ("add", "sub", "mul", "div")
PASS_THROUGH = ("convert_element_type", "copy", "copy_p", "reduce_precision",
                "optimization_barrier")
RESHAPES = ("reshape", "squeeze", "expand_dims", "broadcast_in_dim")
NESTED_KEYS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
_COMPUTE = ("conv2d", "fully_connected")


def resolve(target: str) -> Callable:
    """`module.path:function` -> the callable."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SpecError(f"model {target!r}: use module.path:function")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise SpecError(f"model {target!r}: cannot import {module_name!r} ({err})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SpecError(f"model {target!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpecError(f"model {target!r}: {attr!r} is not callable")
    return obj


def import_callable(target: str, input_shape: Shape | None, name: str | None = None) -> Any:
    """`module.path:function` (called on one NHWC batch) as a network description."""
    if input_shape is None:
        raise SpecError(f"model {target!r}: a JAX callable needs --input-shape H,W,C")
    return import_function(resolve(target), input_shape, name=name or target)


def import_function(fn: Callable, input_shape: Shape, *args: Any,
                    name: str = "jax_function") -> Any:
    """The description of `fn(x, *args)` for x of shape [1, *input_shape]; `args` are weights.

    `args` may hold `jax.ShapeDtypeStruct` leaves (e.g. an abstract
    `nnx.State`), so a model need not be materialized to be imported.
    """
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    try:
        closed = jax.make_jaxpr(fn)(x, *args)
    except Exception as err:  # the user's function failed to trace
        raise SpecError(f"{name}: tracing failed ({type(err).__name__}: {err})") from None
    b = _Reader(GraphBuilder(name, "jaxpr"))
    jaxpr = closed.jaxpr
    b.g.set_input(b.key(jaxpr.invars[0]), tuple(input_shape))
    b.walk(jaxpr, "")
    return b.finish()


class _Reader:
    """Walks a jaxpr, keeping which variables are activations."""

    def __init__(self, g: GraphBuilder) -> None:
        self.g = g
        self._keys: dict[int, str] = {}
        self._env: dict[int, str] = {}  # a nested jaxpr's variable -> its caller's key
        self._affine: dict[str, set[str]] = {}  # batch-norm layer built from arithmetic
        self._sum_pools: set[str] = set()  # tensors that are window/global sums
        self._counts: dict[str, int] = {}

    def key(self, var: Any) -> str:
        vid = id(var)
        if vid in self._env:
            return self._env[vid]
        return self._keys.setdefault(vid, f"v{len(self._keys)}")

    def is_act(self, var: Any) -> bool:
        return not _is_literal(var) and self.g.has(self.key(var))

    def name(self, op: str) -> str:
        n = self._counts.get(op, 0)
        self._counts[op] = n + 1
        return f"{op}_{n}"

    def walk(self, jaxpr: Any, prefix: str) -> None:
        for i, eqn in enumerate(jaxpr.eqns):
            where = f"jaxpr equation {prefix}{i} ({eqn.primitive.name})"
            acts = [v for v in eqn.invars if self.is_act(v)]
            if not acts:
                continue  # constant arithmetic
            nested = next((eqn.params[k] for k in NESTED_KEYS if k in eqn.params), None)
            if nested is not None and eqn.primitive.name not in MAPPED:
                inner = getattr(nested, "jaxpr", nested)
                for outer, var in zip(eqn.invars, inner.invars[-len(eqn.invars):],
                                      strict=False):
                    if self.is_act(outer):
                        self._env[id(var)] = self.key(outer)
                self.walk(inner, f"{prefix}{i}.")
                for outer, var in zip(eqn.outvars, inner.outvars, strict=True):
                    if not _is_literal(var) and self.is_act(var):
                        self._env[id(outer)] = self.key(var)
                continue
            handler = MAPPED.get(eqn.primitive.name)
            if handler is None:
                raise SpecError(f"{where}: not supported by the importer; it maps "
                                f"{sorted(MAPPED)} and follows nested jaxprs")
            handler(self, eqn, acts, where)

    def out(self, eqn: Any, where: str) -> tuple[str, Shape]:
        var = eqn.outvars[0]
        return self.key(var), to_hwc([int(d) for d in var.aval.shape], where)

    def alias(self, eqn: Any, src: Any) -> None:
        self.g.alias(self.key(eqn.outvars[0]), self.key(src))

    def finish(self) -> Any:
        # An affine chain without a multiply right after a bias-free conv or
        # dense layer consumed by nothing else is that layer's bias.
        layers, by_name = self.g.layers, {layer.name: layer for layer in self.g.layers}
        consumers: dict[str, int] = {}
        for layer in layers:
            for src in layer.inputs:
                consumers[src] = consumers.get(src, 0) + 1
        rename: dict[str, str] = {}
        kept = []
        for layer in layers:
            layer = dataclasses.replace(layer, inputs=tuple(rename.get(s, s)
                                                            for s in layer.inputs))
            kinds = self._affine.get(layer.name)
            host = by_name.get(layer.inputs[0])
            if (kinds is not None and kinds <= {"add", "sub"} and host is not None
                    and host.op in _COMPUTE and not host.use_bias
                    and consumers.get(host.name) == 1):
                idx = next(j for j, k in enumerate(kept) if k.name == host.name)
                kept[idx] = by_name[host.name] = dataclasses.replace(kept[idx], use_bias=True)
                rename[layer.name] = host.name
                continue
            kept.append(layer)
        self.g.layers = kept
        return self.g.build()


def _is_literal(var: Any) -> bool:
    return type(var).__name__ == "Literal"


def _literal(var: Any) -> float | None:
    if not _is_literal(var):
        return None
    try:
        return float(var.val)
    except (TypeError, ValueError):
        return None


def _conv(r: _Reader, eqn: Any, acts: list, where: str) -> None:
    p = eqn.params
    lhs, rhs = eqn.invars
    if not r.is_act(lhs) or r.is_act(rhs):
        raise SpecError(f"{where}: the kernel must be a constant and the input an activation")
    dn = p["dimension_numbers"]
    if tuple(dn.lhs_spec) != (0, 3, 1, 2) or tuple(dn.out_spec) != (0, 3, 1, 2):
        raise SpecError(f"{where}.dimension_numbers: only NHWC activations are read")
    if any(d != 1 for d in p["lhs_dilation"]) or p.get("batch_group_count", 1) != 1:
        raise SpecError(f"{where}: lhs_dilation / batch_group_count (a gradient or "
                        "transposed conv) is not mapped")
    kshape = rhs.aval.shape
    kh, kw = kshape[dn.rhs_spec[2]], kshape[dn.rhs_spec[3]]
    key, shape = r.out(eqn, where)
    in_h, in_w, _ = r.g.shape(r.key(lhs))
    (sh, sw), (dh, dw) = p["window_strides"], p["rhs_dilation"]
    pads = tuple(tuple(int(v) for v in pair) for pair in p["padding"])
    r.g.add(r.name("conv2d"), key, [r.key(lhs)], shape, op="conv2d", kernel_size=(kh, kw),
            stride=(sh, sw), dilation=(dh, dw),
            padding=_padding(pads, (in_h, in_w), (kh, kw), (sh, sw), (dh, dw)),
            groups=int(p["feature_group_count"]))


def _padding(pads: tuple, size: tuple, kernel: tuple, stride: tuple, dilation: tuple
             ) -> str | tuple[int, int, int, int]:
    """Explicit (lo, hi) pairs as 'same' / 'valid' when they are exactly that."""
    same = []
    for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
        out = math.ceil(n / s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        same.append((total // 2, total - total // 2))
    if pads == tuple(same):
        return "same"
    if all(v == 0 for pair in pads for v in pair):
        return "valid"
    (top, bottom), (left, right) = pads
    return (top, bottom, left, right)


def _dot(r: _Reader, eqn: Any, acts: list, where: str) -> None:
    lhs, rhs = eqn.invars
    key, shape = r.out(eqn, where)
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    if len(acts) == 2:
        r.g.add(r.name("matmul"), key, [r.key(lhs), r.key(rhs)], shape, op="matmul",
                transpose_b=tuple(rc) == (len(rhs.aval.shape) - 1,))
        return
    if not r.is_act(lhs) or tuple(lc) != (len(lhs.aval.shape) - 1,) or tuple(rc) != (0,) \
            or lb or rb or len(rhs.aval.shape) != 2:
        raise SpecError(f"{where}: only x @ W (activation on the left, a 2-D constant "
                        "weight contracted on its first axis) is mapped")
    src = r.key(lhs)
    op = "fully_connected" if r.g.shape(src)[:2] == (1, 1) else "conv2d"
    r.g.add(r.name(op), key, [src], shape, op=op)


def _elementwise(r: _Reader, eqn: Any, acts: list, where: str) -> None:
    prim = eqn.primitive.name
    key, shape = r.out(eqn, where)
    if len(acts) == 2:
        if prim not in ("add", "mul"):
            raise SpecError(f"{where}: {prim} of two activations is not mapped")
        r.g.add(r.name(prim), key, [r.key(v) for v in eqn.invars], shape, op=prim)
        return
    src_var = acts[0]
    src = r.key(src_var)
    const = next(v for v in eqn.invars if v is not src_var)
    scalar = math.prod(getattr(const.aval, "shape", ())) == 1
    if src in r._sum_pools and scalar and prim in ("mul", "div"):
        r.g.alias(key, src)  # sum / window size: the average the pool layer stands for
        return
    producer = r.g.layers[-1] if r.g.layers else None
    if (producer is not None and producer.name in r._affine
            and r.g.producer(src) == producer.name):
        r._affine[producer.name].add(prim)  # one more step of the same affine chain
        r.g.alias(key, src)
        return
    if shape != r.g.shape(src):
        raise SpecError(f"{where}: broadcasting an activation against a constant is not "
                        "mapped")
    layer = r.g.add(r.name("batch_norm"), key, [src], shape, op="batch_norm")
    r._affine[layer.name] = {prim}


def _minmax(r: _Reader, eqn: Any, acts: list, where: str) -> None:
    key, shape = r.out(eqn, where)
    consts = [_literal(v) for v in eqn.invars if not r.is_act(v)]
    if eqn.primitive.name == "max" and consts == [0.0]:
        r.g.add(r.name("relu"), key, [r.key(acts[0])], shape, op="activation",
                activation="relu")
        return
    if len(acts) == 1 and consts[0] is not None:
        r.g.add(r.name("clip"), key, [r.key(acts[0])], shape, op="activation",
                activation="clip")
        return
    raise SpecError(f"{where}: {eqn.primitive.name} is mapped only against a scalar literal")


def _reduce(r: _Reader, eqn: Any, acts: list, where: str) -> None:
    src = r.key(acts[0])
    axes = tuple(eqn.params["axes"])
    if len(acts[0].aval.shape) != 4 or axes != (1, 2):
        raise SpecError(f"{where}.axes: {axes}; only a reduction over height and width "
                        "(global pooling) is mapped")
    key, _ = r.out(eqn, where)
    h, w, c = r.g.shape(src)
    is_sum = eqn.primitive.name == "reduce_sum"
    r.g.add(r.name("pool"), key, [src], (1, 1, c), op="pool", kernel_size=(h, w),
            padding="valid", pool_type="avg" if is_sum else "max", global_pool=True)
    if is_sum:
        r._sum_pools.add(key)


def _reduce_window(r: _Reader, eqn: Any, acts: list, where: str) -> None:
    p = eqn.params
    dims, strides = tuple(p["window_dimensions"]), tuple(p["window_strides"])
    if len(dims) != 4 or dims[0] != 1 or dims[3] != 1 or strides[0] != 1 or strides[3] != 1:
        raise SpecError(f"{where}: only spatial NHWC pooling windows are mapped")
    if any(d != 1 for d in p.get("base_dilation", (1,) * 4)) or any(
            d != 1 for d in p.get("window_dilation", (1,) * 4)):
        raise SpecError(f"{where}: dilated pooling windows are not mapped")
    src = r.key(acts[0])
    key, shape = r.out(eqn, where)
    pads = tuple(tuple(int(v) for v in pair) for pair in p["padding"][1:3])
    size = r.g.shape(src)[:2]
    is_sum = eqn.primitive.name == "reduce_window_sum"
    r.g.add(r.name("pool"), key, [src], shape, op="pool", kernel_size=dims[1:3],
            stride=strides[1:3],
            padding=_padding(pads, size, dims[1:3], strides[1:3], (1, 1)),
            pool_type="avg" if is_sum else "max")
    if is_sum:
        r._sum_pools.add(key)


def _concat(r: _Reader, eqn: Any, acts: list, where: str) -> None:
    if len(acts) != len(eqn.invars):
        raise SpecError(f"{where}: concatenating a constant is not mapped")
    rank, dim = len(acts[0].aval.shape), int(eqn.params["dimension"])
    axis = hwc_axis(dim, rank)
    if axis is None:
        raise SpecError(f"{where}.dimension: {dim} of a rank-{rank} activation")
    key, shape = r.out(eqn, where)
    r.g.add(r.name("concat"), key, [r.key(v) for v in acts], shape, op="concat", axis=axis)


def _reshape(r: _Reader, eqn: Any, acts: list, where: str) -> None:
    src = r.key(acts[0])
    key, shape = r.out(eqn, where)
    if shape == r.g.shape(src):
        r.g.alias(key, src)
    elif eqn.primitive.name == "broadcast_in_dim":
        raise SpecError(f"{where}: broadcasting an activation is not mapped")
    else:
        op = "flatten" if shape[:2] == (1, 1) else "reshape"
        r.g.add(r.name(op), key, [src], shape, op=op)


def _pass(r: _Reader, eqn: Any, acts: list, where: str) -> None:
    r.alias(eqn, acts[0])


def _unary(activation: str) -> Callable:
    def handler(r: _Reader, eqn: Any, acts: list, where: str) -> None:
        key, shape = r.out(eqn, where)
        r.g.add(r.name(activation), key, [r.key(acts[0])], shape, op="activation",
                activation=activation)
    return handler


MAPPED: dict[str, Callable] = {
    "conv_general_dilated": _conv, "dot_general": _dot,
    **{p: _elementwise for p in ELEMENTWISE}, "max": _minmax, "min": _minmax,
    "reduce_sum": _reduce, "reduce_max": _reduce,
    "reduce_window_sum": _reduce_window, "reduce_window_max": _reduce_window,
    "concatenate": _concat, **{p: _reshape for p in RESHAPES},
    **{p: _pass for p in PASS_THROUGH},
    "logistic": _unary("sigmoid"), "tanh": _unary("tanh"),
}
