"""How a block's shared full kxk kernel is stored: whole, or only the tiles group convs read.

A group conv with g groups over (cin, cout) channels takes its kernel from the
block diagonal of one shared full kernel [k, k, Cin_max, Cout_max]: group i
reads rows i*cin/g.. and columns i*cout/g.. of it, so Fused-IBN (1 group) and
GC-IBNs of every group size train the same weights. Where some configuration
has 1 group, all of the full kernel is read and it is stored whole. Where only
group convs read it, they read a band around the diagonal: in
`mobilenet_edgetpu_v2` 13-23% of each full kernel (grouped_ibn at e1 = 4 reads
1152 -> 2304 channels at 7x7 in 18, 36 or 72 groups), and storing those
kernels whole made a supernet of 2.52 billion weights instead of 0.59.

So a `SharedKernel` cuts the full kernel into a grid of equal tiles, sides the
gcd of every group's rows and columns (each group is a whole number of tiles),
and stores only the tiles some configuration reads, as
`[num_tiles, k, k, tile_in, tile_out]`. Every group conv computes what it would
with the whole kernel stored: the entries left out are the ones nobody reads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class SharedKernel:
    """The storage of one shared full kxk kernel [k, k, cin, cout].

    `tile_ids` [cin / tile_in, cout / tile_out]: the row of each tile in the stored
    array, -1 for tiles no configuration reads; None when the kernel is stored whole.
    """

    kernel_size: int
    cin: int
    cout: int
    tile_in: int
    tile_out: int
    tile_ids: np.ndarray | None

    @property
    def shape(self) -> tuple[int, ...]:
        k = self.kernel_size
        if self.tile_ids is None:
            return (k, k, self.cin, self.cout)
        return (int((self.tile_ids >= 0).sum()), k, k, self.tile_in, self.tile_out)

    def grouped_kernel(self, stored: jax.Array, cin: int, cout: int, groups: int) -> jax.Array:
        """The grouped HWIO kernel [k, k, cin / groups, cout] of a group conv: group i
        takes rows i*cin/groups.. and columns i*cout/groups.. of the full kernel."""
        ci, co = cin // groups, cout // groups
        if self.tile_ids is None:
            return jnp.concatenate([stored[:, :, i * ci:(i + 1) * ci, i * co:(i + 1) * co]
                                    for i in range(groups)], axis=-1)
        rows, cols = ci // self.tile_in, co // self.tile_out
        ids = np.stack([self.tile_ids[i * rows:(i + 1) * rows, i * cols:(i + 1) * cols]
                        for i in range(groups)])  # [groups, rows, cols]
        if (ids < 0).any():
            raise ValueError(f"a {groups}-group conv {cin}->{cout} reads tiles this layout "
                             "does not store; build it with make_shared_kernel over every read")
        tiles = _take_tiles(stored, ids.reshape(-1))
        k = self.kernel_size
        tiles = tiles.reshape(groups, rows, cols, k, k, self.tile_in, self.tile_out)
        # kernel[.., a*tile_in + u, i*co + b*tile_out + v] = tile (i*rows + a, i*cols + b)[u, v]
        return tiles.transpose(3, 4, 1, 5, 0, 2, 6).reshape(k, k, ci, cout)

    def full_kernel(self, stored: jax.Array) -> jax.Array:
        """The whole kernel [k, k, cin, cout], zeros where no tile is stored (a masked
        layer reads it through `block_diagonal_mask`, which keeps stored entries only)."""
        if self.tile_ids is None:
            return stored
        k, (rows, cols) = self.kernel_size, self.tile_ids.shape
        padded = jnp.concatenate([stored, jnp.zeros((1, *stored.shape[1:]), stored.dtype)])
        ids = np.where(self.tile_ids >= 0, self.tile_ids, stored.shape[0])  # last: zeros
        grid = jnp.take(padded, ids.reshape(-1), axis=0).reshape(
            rows, cols, k, k, self.tile_in, self.tile_out)
        return grid.transpose(2, 3, 0, 4, 1, 5).reshape(k, k, self.cin, self.cout)

    def pack(self, full: jax.Array) -> jax.Array:
        """The stored form of a whole kernel [k, k, cin, cout] (the tiles this layout keeps)."""
        if self.tile_ids is None:
            return full
        k, (rows, cols) = self.kernel_size, self.tile_ids.shape
        grid = full.reshape(k, k, rows, self.tile_in, cols, self.tile_out)
        grid = grid.transpose(2, 4, 0, 1, 3, 5).reshape(rows * cols, k, k, self.tile_in,
                                                        self.tile_out)
        # Tile ids number the stored tiles in row-major order (`make_shared_kernel`).
        return grid[np.flatnonzero(self.tile_ids.reshape(-1) >= 0)]


def make_shared_kernel(kernel_size: int, reads: Iterable[tuple[int, int, int]]
                       ) -> SharedKernel:
    """The layout for a full kernel read by group convs `reads`: (cin, cout, groups) each."""
    reads = list(reads)
    cin, cout = max(r[0] for r in reads), max(r[1] for r in reads)
    tile_in = math.gcd(cin, *(c // g for c, _, g in reads))
    tile_out = math.gcd(cout, *(c // g for _, c, g in reads))
    read = np.zeros((cin // tile_in, cout // tile_out), dtype=bool)
    for c_in, c_out, groups in reads:
        rows, cols = c_in // groups // tile_in, c_out // groups // tile_out
        for i in range(groups):
            read[i * rows:(i + 1) * rows, i * cols:(i + 1) * cols] = True
    if read.all():
        return SharedKernel(kernel_size, cin, cout, cin, cout, None)
    tile_ids = np.where(read, np.cumsum(read).reshape(read.shape) - 1, -1).astype(np.int32)
    return SharedKernel(kernel_size, cin, cout, tile_in, tile_out, tile_ids)


def block_diagonal_mask(max_in: int, max_out: int, cin: jax.Array, cout: jax.Array,
                        groups: jax.Array) -> jax.Array:
    """[max_in, max_out] 0/1: the entries of a full kernel a `groups`-group conv over
    (cin, cout) channels reads (traced counts), so that a dense conv with the masked
    kernel computes the group conv, zero-padded."""
    groups = jnp.maximum(groups, 1)
    rows = jnp.arange(max_in)[:, None]
    cols = jnp.arange(max_out)[None, :]
    same_group = rows // jnp.maximum(cin // groups, 1) == cols // jnp.maximum(cout // groups, 1)
    return ((rows < cin) & (cols < cout) & same_group).astype(jnp.float32)


def _take_tiles(stored: jax.Array, ids: np.ndarray) -> jax.Array:
    """stored[ids] for distinct ids, with its gradient a gather too (each stored tile gets
    its cotangent tile or zeros) instead of autodiff's scatter-add."""
    slot = np.full(stored.shape[0], len(ids), dtype=np.int32)  # len(ids): a zero tile
    slot[ids] = np.arange(len(ids), dtype=np.int32)

    @jax.custom_vjp
    def take(s: jax.Array) -> jax.Array:
        return jnp.take(s, ids, axis=0)

    def backward(_, ct: jax.Array) -> tuple[jax.Array]:
        padded = jnp.concatenate([ct, jnp.zeros((1, *ct.shape[1:]), ct.dtype)])
        return (jnp.take(padded, slot, axis=0),)

    take.defvjp(lambda s: (take(s), None), backward)
    return take(stored)
