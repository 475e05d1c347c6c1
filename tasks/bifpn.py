"""The BiFPN segmentation head of Autoseg-EdgeTPU, in both forms and as a description.

Structure (as tensorflow/models builds `AutosegEdgeTPU` in
`official/projects/edgetpu/vision/tasks/semantic_segmentation.py` with
`modeling/heads/bifpn_head.py`: sum fusion, avg-pool downsampling, bilinear
upsampling, 3x3 separable convs, BN, ReLU6). Level L is stride 2^L:

    input.p{L}        L = min..top (top: the backbone's coarsest endpoint level):
                      endpoint stride_{2^L} -> 1x1 conv with bias -> BN     (F channels)
    input.down        levels top+1..max: the coarsest endpoint -> 1x1 conv with bias,
                      then one 3x3/2 average pool per extra level
    cell{r}.td{L}     per repeat r, top-down, L = max-1 .. min:
                      P_L + upsample(latest P_{L+1}) -> separable conv (.dw, .pw) BN ReLU6
    cell{r}.bu{L}     bottom-up, L = min+1 .. max:
                      P_L (+ td_L) + downsample(latest P_{L-1}) -> separable conv BN ReLU6
    output.fuse       every level resampled to level min, summed -> separable conv BN ReLU6
    logits.dw, logits separable 3x3 conv with bias -> classes, at stride 2^min

Resampling: a coarser map is upsampled bilinearly (half-pixel centers) to the
finer size; a finer one is average-pooled ('same', window s+1, stride s, the
padding not counted) with s = (h - 1) // target + 1. Sums add the inputs
pairwise in the reference's order.

One `forward(cfg, min_level, repeats, endpoints, ops)` writes the head once
over four operations (`conv`, `add`, `pool`, `upsample`): the supernet's and
the nnx module's ops compute, the description's ops emit `Layer`s, so the
network description is the network the models run.

Searched by weight sharing (the `autoseg` space's head decisions, number of
repeats and minimum level): the supernet holds the weights of the largest
choice (most repeats, lowest minimum level); a layer's weights are keyed by its
name (repeat, direction, level), so every choice reads the same tensors.
`apply_params` runs one trace for every choice: a `lax.switch` over the
minimum levels (each branch a static graph) whose output is resized to the
input resolution, and inside it a `lax.cond` per repeat beyond the fewest, so a
step computes only the picked head (masking every choice instead measured about
the same on CPU for a tiny space: EXPERIMENTS.md section 9).

Difference from the reference, on purpose: a backbone endpoint that already
has F channels still gets its 1x1 conv (the reference skips it), so the head's
structure does not depend on the backbone's widths, which the search changes;
none of the released Autoseg backbones has such an endpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from search_spaces import Layer, SpecError
from tasks import head_parts
from tasks.deeplab import resize_bilinear
from tasks.head_parts import ConvSpec


@dataclasses.dataclass(frozen=True)
class BiFPNConfig:
    """The head's settings (released: levels 3..8, 96 filters, 4 repeats)."""

    num_classes: int
    min_level: int = 3
    max_level: int = 8
    num_filters: int = 96
    num_repeats: int = 4

    def __post_init__(self) -> None:
        for field in ("num_classes", "min_level", "num_filters"):
            if int(getattr(self, field)) < 1:
                raise SpecError(f"bifpn_{field}: {getattr(self, field)} must be >= 1")
        if self.num_repeats < 0:
            raise SpecError(f"bifpn_num_repeats: {self.num_repeats} must be >= 0")
        if self.max_level < self.min_level:
            raise SpecError(f"bifpn_max_level: {self.max_level} is below bifpn_min_level "
                            f"{self.min_level}")


def endpoint_levels(widths: Mapping[str, Any]) -> list[int]:
    """Levels L with a `stride_{2^L}` endpoint, ascending."""
    out = []
    for name in widths:
        if name.startswith("stride_"):
            stride = int(name.split("_", 1)[1])
            if stride & (stride - 1) == 0:
                out.append(stride.bit_length() - 1)
    return sorted(out)


def _top(cfg: BiFPNConfig, min_level: int, widths: Mapping[str, Any]) -> int:
    levels = endpoint_levels(widths)
    if min_level not in levels:
        raise SpecError(f"bifpn min_level: {min_level} (stride {2 ** min_level}) is not an "
                        f"endpoint level of this backbone; use one of {levels}")
    return min(levels[-1], cfg.max_level)


def layer_specs(cfg: BiFPNConfig, widths: Mapping[str, int], min_level: int | None = None,
                repeats: int | None = None) -> dict[str, ConvSpec]:
    """Every parametrized layer for endpoint `widths` (defaults: the config's choice)."""
    m = cfg.min_level if min_level is None else min_level
    r_count = cfg.num_repeats if repeats is None else repeats
    top, f = _top(cfg, m, widths), cfg.num_filters
    specs = [ConvSpec(f"input.p{lv}", widths[f"stride_{2 ** lv}"], f, use_bias=True,
                      activation=None) for lv in range(m, top + 1)]
    if cfg.max_level > top:
        specs.append(ConvSpec("input.down", widths[f"stride_{2 ** top}"], f, use_bias=True,
                              batch_norm=False, activation=None))

    def separable(name: str, cout: int = f, head: bool = False) -> list[ConvSpec]:
        return [ConvSpec(f"{name}.dw" if not head else "logits.dw", f, f, 3, depthwise=True,
                         batch_norm=False, activation=None),
                ConvSpec(name, f, cout, batch_norm=not head, use_bias=head,
                         activation=None if head else "relu6", logits=head)]

    for r in range(r_count):
        for lv in range(cfg.max_level - 1, m - 1, -1):
            specs += _rename(separable(f"cell{r}.td{lv}"))
        for lv in range(m + 1, cfg.max_level + 1):
            specs += _rename(separable(f"cell{r}.bu{lv}"))
    specs += _rename(separable("output.fuse"))
    specs += separable("logits", cfg.num_classes, head=True)
    return {s.name: s for s in specs}


def _rename(pair: list[ConvSpec]) -> list[ConvSpec]:
    # A fusion node's pointwise conv is `<node>.pw` (its depthwise `<node>.dw`).
    dw, pw = pair
    return [dw, dataclasses.replace(pw, name=f"{pw.name}.pw")]


# ---- the one forward ------------------------------------------------------------------
@dataclasses.dataclass
class Ops:
    """What `forward` computes with: `conv(name, x)`, `add(a, b)`, `pool(x, stride)`
    (3x3-ish 'same' average pool), `upsample(x, like)`, `size(x)` -> (h, w)."""

    conv: Callable[[str, Any], Any]
    add: Callable[[Any, Any], Any]
    pool: Callable[[Any, int], Any]
    upsample: Callable[[Any, Any], Any]
    size: Callable[[Any], tuple[int, int]]
    cell: Callable[[int, Callable[[Any], Any], Any], Any] = lambda r, fn, feats: fn(feats)


def _resample(ops: Ops, x: Any, like: Any) -> Any:
    (h, w), (th, tw) = ops.size(x), ops.size(like)
    if h > th and w > tw:
        return ops.pool(x, (h - 1) // th + 1)
    if h < th or w < tw:
        return ops.upsample(x, like)
    return x


def _sum(ops: Ops, xs: Sequence[Any]) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = ops.add(out, x)
    return out


def forward(cfg: BiFPNConfig, min_level: int, repeats: int, endpoints: Mapping[str, Any],
            ops: Ops) -> Any:
    """The head's logits at level `min_level` for `repeats` cells; `ops.cell(r, fn,
    feats)` runs cell r (the supernet gates the ones a choice may skip)."""
    top, hi = _top(cfg, min_level, endpoints), cfg.max_level
    feats = {lv: ops.conv(f"input.p{lv}", endpoints[f"stride_{2 ** lv}"])
             for lv in range(min_level, top + 1)}
    if hi > top:
        x = ops.conv("input.down", endpoints[f"stride_{2 ** top}"])
        for lv in range(top + 1, hi + 1):
            x = feats[lv] = ops.pool(x, 2)

    def node(name: str, xs: Sequence[Any]) -> Any:
        return ops.conv(f"{name}.pw", ops.conv(f"{name}.dw", _sum(ops, xs)))

    def cell(r: int, feats: dict[int, Any]) -> dict[int, Any]:
        latest, td = dict(feats), {}
        for lv in range(hi - 1, min_level - 1, -1):
            td[lv] = latest[lv] = node(f"cell{r}.td{lv}", [
                feats[lv], _resample(ops, latest[lv + 1], feats[lv])])
        for lv in range(min_level + 1, hi + 1):
            xs = [feats[lv], *([td[lv]] if lv in td else []),
                  _resample(ops, latest[lv - 1], feats[lv])]
            latest[lv] = node(f"cell{r}.bu{lv}", xs)
        return latest

    for r in range(repeats):
        feats = ops.cell(r, lambda f, r=r: cell(r, f), feats)
    base = feats[min_level]
    x = node("output.fuse", [_resample(ops, feats[lv], base)
                             for lv in range(min_level, hi + 1)])
    return ops.conv("logits", ops.conv("logits.dw", x))


def avg_pool(x: jax.Array, stride: int) -> jax.Array:
    """'same' average pool, window stride+1, the padding not counted (TF's)."""
    window, strides = (1, stride + 1, stride + 1, 1), (1, stride, stride, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, "SAME")
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, "SAME")
    return total / count


def array_ops(conv: Callable[[str, jax.Array], jax.Array]) -> Ops:
    return Ops(conv=conv, add=jnp.add, pool=avg_pool,
               upsample=lambda x, like: resize_bilinear(x, *like.shape[1:3]),
               size=lambda x: tuple(x.shape[1:3]))


# ---- description ----------------------------------------------------------------------
def head_layers(cfg: BiFPNConfig, endpoints: Mapping[str, tuple[str, tuple[int, int, int]]]
                ) -> list[Layer]:
    """The head's description layers (logits last), given each endpoint's (layer name,
    [H, W, C])."""
    specs = layer_specs(cfg, {n: shape[2] for n, (_, shape) in endpoints.items()})
    layers: list[Layer] = []
    shapes: dict[str, tuple[int, int, int]] = {name: shape for name, shape in
                                               endpoints.values()}
    counter = iter(range(1 << 30))

    def emit(layer: Layer) -> str:
        layers.append(layer)
        shapes[layer.name] = layer.output_shape
        return layer.name

    def pool(x: str, stride: int) -> str:
        h, w, c = shapes[x]
        return emit(Layer(name=f"pool{next(counter)}", op="pool", inputs=(x,),
                          input_shape=shapes[x], output_shape=(-(-h // stride), -(-w // stride),
                                                               c),
                          kernel_size=stride + 1, stride=stride, padding="same",
                          pool_type="avg"))

    def upsample(x: str, like: str) -> str:
        h, w, _ = shapes[like]
        return emit(Layer(name=f"upsample{next(counter)}", op="resize", inputs=(x,),
                          input_shape=shapes[x], output_shape=(h, w, shapes[x][2]),
                          mode="bilinear"))

    def add(a: str, b: str) -> str:
        return emit(Layer(name=f"add{next(counter)}", op="add", inputs=(a, b),
                          input_shape=shapes[a], output_shape=shapes[a]))

    ops = Ops(conv=lambda name, x: emit(head_parts.conv_layer(specs[name], x, shapes[x])),
              add=add, pool=pool, upsample=upsample, size=lambda x: shapes[x][:2])
    names = {n: layer_name for n, (layer_name, _) in endpoints.items()}
    forward(cfg, cfg.min_level, cfg.num_repeats, names, ops)
    return layers


# ---- supernet form --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Choices:
    """The head decisions a supernet searches: the values each may take."""

    num_repeats: tuple[int, ...]
    min_level: tuple[int, ...]

    @classmethod
    def fixed(cls, cfg: BiFPNConfig) -> Choices:
        return cls((cfg.num_repeats,), (cfg.min_level,))


def init_params(cfg: BiFPNConfig, key: jax.Array, widths: Mapping[str, int],
                choices: Choices | None = None) -> Any:
    """Weights of the largest choice (lowest minimum level, most repeats)."""
    choices = choices or Choices.fixed(cfg)
    specs = layer_specs(cfg, widths, min(choices.min_level), max(choices.num_repeats))
    return head_parts.init_params(specs, key)


def apply_params(cfg: BiFPNConfig, params: Any, endpoints: Mapping[str, jax.Array],
                 choices: Choices | None = None, picked: jax.Array | None = None
                 ) -> jax.Array:
    """The supernet head for the choice `picked` ([2] int: index into
    `choices.num_repeats`, into `choices.min_level`; traced). With one minimum-level
    choice the logits are at that level; with several, resized to the input size
    (module docstring)."""
    choices = choices or Choices.fixed(cfg)
    picked = jnp.zeros((2,), jnp.int32) if picked is None else picked
    widths = {n: x.shape[-1] for n, x in endpoints.items()}
    specs = layer_specs(cfg, widths, min(choices.min_level), max(choices.num_repeats))
    ops = array_ops(head_parts.batch_stat_conv(specs, params))
    repeats = jnp.asarray(choices.num_repeats, jnp.int32)[picked[0]]
    fewest = min(choices.num_repeats)

    def gated(r: int, fn: Callable[[Any], Any], feats: Any) -> Any:
        if r < fewest:
            return fn(feats)
        return jax.lax.cond(r < repeats, fn, lambda f: f, feats)

    ops.cell = gated

    def branch(m: int) -> Callable[[Mapping[str, jax.Array]], jax.Array]:
        def run(eps: Mapping[str, jax.Array]) -> jax.Array:
            logits = forward(cfg, m, max(choices.num_repeats), eps, ops)
            if len(choices.min_level) == 1:
                return logits
            return resize_bilinear(logits, *input_size(eps))
        return run

    if len(choices.min_level) == 1:
        return branch(choices.min_level[0])(endpoints)
    return jax.lax.switch(picked[1], [branch(m) for m in choices.min_level], endpoints)


def input_size(endpoints: Mapping[str, jax.Array]) -> tuple[int, int]:
    """The image's (H, W) from the finest `stride_S` endpoint."""
    level = endpoint_levels(endpoints)[0]
    x = endpoints[f"stride_{2 ** level}"]
    return x.shape[1] << level, x.shape[2] << level


def inherit_params(cfg: BiFPNConfig, params: Any, widths: Mapping[str, int]
                   ) -> dict[str, dict[str, Any]]:
    """The weights of `cfg`'s choice for a child of endpoint `widths`."""
    return head_parts.inherit_params(layer_specs(cfg, widths), params)


# ---- standalone form ------------------------------------------------------------------
class BiFPNHead(head_parts.SpecHead):
    """The standalone head: `head(endpoints)` -> logits at level `min_level`."""

    def __init__(self, cfg: BiFPNConfig, widths: Mapping[str, int], *, rngs: nnx.Rngs
                 ) -> None:
        self.cfg = cfg
        self._build(layer_specs(cfg, widths), rngs)

    def __call__(self, endpoints: Mapping[str, jax.Array], rngs: Any = None) -> jax.Array:
        del rngs  # no dropout
        return forward(self.cfg, self.cfg.min_level, self.cfg.num_repeats, endpoints,
                       array_ops(self.conv))
