"""Single-block study of Depthwise-, Fused- and GC-IBNs across tensor shapes (paper §4.3).

For each tensor shape of a sweep (early stage 112x112x24 ... late stage
7x7x256), cost one IBN of each type (stride 1, same input and output width,
residual) on a target: latency, parameters, MACs and array utilization,
and for GC-IBNs every valid group size. The paper's finding, which the
simulator should reproduce: in the deep-channel stages GC-IBNs with large
groups reach a utilization near the Fused-IBN's at a latency near the
Depthwise-IBN's, while Fused-IBNs get expensive there.

What this model gives (e = 4, k = 3, `tunas-jax analyze-blocks`): at
14x14x160 and 7x7x256 the largest-group GC-IBN's kxk conv reaches 0.76-0.89
utilization (Fused: 0.76-0.98, depthwise: ~0.015) at a latency at or below
the DW-IBN's, with 1.35-1.6x its params; Fused-IBNs cost 1.7-2.3x the DW-IBN
there while they are the cheaper choice at 112x112x24. Unlike the paper,
where DW-IBNs are slightly faster, GC-IBNs here are faster than DW-IBNs at
every group size: a GC-IBN has no 1x1 expansion conv, and the model's
depthwise conv (one output channel per group: ~1.5% of the array) costs
more than the expansion it replaces.

`analyze(target)` returns the rows; `format_table(rows)` prints them;
`plot(rows, path)` saves latency vs params per shape (matplotlib, Agg).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cost_models.hardware import LatencyModel, get_target
from cost_models.simulator import layer_cost
from search_spaces.blocks import Block, realize_groups
from search_spaces.fileio import atomic_write
from search_spaces.ibn import BlockType
from search_spaces.model_spec import ModelSpec
from search_spaces.network import Layer
from tasks import describe

# (label, spatial size, channels): the stage shapes of a 224 px ImageNet model.
DEFAULT_SHAPES: tuple[tuple[str, int, int], ...] = (
    ("112x112x24", 112, 24),
    ("56x56x48", 56, 48),
    ("28x28x64", 28, 64),
    ("14x14x128", 14, 128),
    ("14x14x160", 14, 160),
    ("7x7x256", 7, 256),
)
DEFAULT_GROUP_SIZES = (8, 16, 32, 64, 128, 256)


@dataclasses.dataclass(frozen=True)
class BlockResult:
    shape: str
    block_type: str  # dw_ibn, fused_ibn, gc_ibn
    group_size: int | None  # output channels per group of the kxk conv
    groups: int | None
    latency_ms: float
    params: int
    macs: int
    utilization: float  # whole block: MACs / (array cycles * MACs per cycle)
    kxk_utilization: float  # the kxk (depthwise / full / group) conv alone

    @property
    def label(self) -> str:
        if self.block_type == BlockType.GC_IBN:
            return f"gc_ibn/g{self.group_size}"
        return self.block_type


def block_layers(block: Block, size: int) -> list[Layer]:
    """The layers `describe` writes for `block` at a `size` x `size` input."""
    spec = ModelSpec(block.input_filters, 1, 1, (block,), 8)
    net = describe(spec, size, 1, input_channels=block.input_filters)
    return [layer for layer in net.layers if layer.name.startswith("blocks.0.")]


def cost_block(block: Block, size: int, target: LatencyModel, shape: str = ""
               ) -> BlockResult:
    """Latency etc. of one block on its own (weights cached; no network I/O)."""
    layers = block_layers(block, size)
    costs = [layer_cost(layer, target) for layer in layers]
    cycles = sum(c.compute_cycles for c in costs)
    macs = sum(c.macs for c in costs)
    kxk = [c for layer, c in zip(layers, costs, strict=True)
           if layer.op == "conv2d" and layer.kernel_size > 1]
    kxk_util = kxk[0].utilization if kxk else 0.0
    return BlockResult(
        shape=shape, block_type=str(block.block_type),
        group_size=block.group_size if block.block_type == BlockType.GC_IBN else None,
        groups=block.groups if block.block_type == BlockType.GC_IBN else None,
        latency_ms=sum(c.latency_ps for c in costs) / 1e9,
        params=sum(layer.params for layer in layers), macs=macs,
        utilization=(macs / (cycles * target.macs_per_cycle) if cycles
                     # A target without an array (cost_models.processor): each layer's
                     # achieved / peak MAC rate, weighted by its time.
                     else sum(c.utilization * c.latency_ps for c in costs)
                     / max(1, sum(c.latency_ps for c in costs))),
        kxk_utilization=kxk_util)


def analyze(target: LatencyModel | str = "pixel6_edgetpu",
            shapes: Sequence[tuple[str, int, int]] = DEFAULT_SHAPES,
            group_sizes: Sequence[int] = DEFAULT_GROUP_SIZES, expansion: int = 4,
            kernel_size: int = 3) -> list[BlockResult]:
    """Cost DW-, Fused- and GC-IBNs (every valid group size) at every shape."""
    target = get_target(target)
    rows: list[BlockResult] = []
    for label, size, c in shapes:
        f = c * expansion
        common = dict(input_filters=c, output_filters=c, stride=1, kernel_size=kernel_size,
                      expansion_ratio=expansion, residual=True)
        blocks = [Block(BlockType.DW_IBN, pointwise_expansion=expansion, groups=f, **common),
                  Block(BlockType.FUSED_IBN, groups=1, **common)]
        seen = set()
        for gs in group_sizes:
            groups = realize_groups(c, f, gs)
            if f // groups == gs and groups not in seen and groups > 1:
                seen.add(groups)
                blocks.append(Block(BlockType.GC_IBN, groups=groups, **common))
        rows += [cost_block(b.validate(), size, target, label) for b in blocks]
    return rows


def format_table(rows: Sequence[BlockResult]) -> str:
    lines = [f"{'shape':12s} {'block':14s} {'groups':>6s} {'latency_us':>10s} {'params_k':>9s} "
             f"{'MMACs':>8s} {'util':>6s} {'kxk_util':>8s}"]
    for r in rows:
        lines.append(f"{r.shape:12s} {r.label:14s} {r.groups or '':>6} {r.latency_ms * 1e3:10.2f} "
                     f"{r.params / 1e3:9.1f} {r.macs / 1e6:8.2f} {r.utilization:6.3f} "
                     f"{r.kxk_utilization:8.3f}")
    return "\n".join(lines)


def plot(rows: Sequence[BlockResult], path: str, title: str = "") -> str:
    """Latency vs params per shape (one panel each), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    shapes = list(dict.fromkeys(r.shape for r in rows))
    cols = min(3, len(shapes))
    nrows = -(-len(shapes) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    style = {"dw_ibn": ("tab:blue", "o"), "fused_ibn": ("tab:red", "s"),
             "gc_ibn": ("tab:green", "^")}
    for ax, shape in zip(axes.flat, shapes, strict=False):
        sub = [r for r in rows if r.shape == shape]
        for kind, (color, marker) in style.items():
            pts = [r for r in sub if r.block_type == kind]
            ax.plot([r.params / 1e3 for r in pts], [r.latency_ms * 1e3 for r in pts],
                    marker=marker, color=color, linestyle="-" if kind == "gc_ibn" else "",
                    label=kind)
            for r in pts:
                if r.group_size:
                    ax.annotate(f"g{r.group_size}", (r.params / 1e3, r.latency_ms * 1e3),
                                fontsize=7, textcoords="offset points", xytext=(3, 3))
        ax.set_title(shape)
        ax.set_xlabel("params (k)")
        ax.set_ylabel("latency (us)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlapping labels
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shapes):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title or "IBN variants: latency vs params")
    fig.tight_layout()
    try:
        with atomic_write(path, "wb", ".png") as f:
            fig.savefig(f, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
