"""Forms of a kxk conv inside `lax.switch` on XLA:CPU (value + gradients), and why the
supernet uses `supernet.ops.group_conv`.

    python benchmarks/bench_conv_in_switch.py

Times one jitted value-and-grad (input and kernel) of sum(conv(x)^2) for
fused- and GC-IBN-sized convs (batch 64), the conv in branch 0 of a switch
whose index is a traced argument (as in the supernet):
- `im2col`: stacked shifted slices + one einsum, autodiff'd (the supernet's
  form before `group_conv`);
- `lax.conv`: autodiff of `lax.conv` with `feature_group_count`;
- `group_conv`: per-group `lax.conv`, VJP written out in canonical forward
  convs (`ops.group_conv`);
- `top level`: per-group `lax.conv` autodiff'd outside any switch (what the
  standalone model costs on CPU).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from supernet import ops

_DN = ("NHWC", "HWIO", "NHWC")


def im2col_conv(x: jax.Array, kernel: jax.Array, stride: int, groups: int) -> jax.Array:
    k, _, cin_g, cout = kernel.shape
    patches = jnp.stack(ops._taps(x, k, stride), axis=-2)          # [N, H', W', k*k, Cin]
    n, h, w = patches.shape[:3]
    patches = patches.reshape(n, h, w, k * k, groups, cin_g)
    wk = kernel.reshape(k * k, cin_g, groups, cout // groups)
    return jnp.einsum("nhwtgc,tcgo->nhwgo", patches, wk).reshape(n, h, w, cout)


def lax_conv(x: jax.Array, kernel: jax.Array, stride: int, groups: int) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (stride, stride), "SAME", dimension_numbers=_DN,
                                    feature_group_count=groups)


def per_group_lax_conv(x: jax.Array, kernel: jax.Array, stride: int, groups: int) -> jax.Array:
    return jnp.concatenate([lax_conv(a, b, stride, 1) for a, b in zip(
        jnp.split(x, groups, axis=-1), jnp.split(kernel, groups, axis=-1), strict=True)], axis=-1)


def time_ms(conv, cin: int, cout: int, k: int, groups: int, stride: int, size: int,
            in_switch: bool, repeats: int = 10) -> float:
    x = jax.random.normal(jax.random.key(0), (64, size, size, cin))
    kernel = jax.random.normal(jax.random.key(1), (k, k, cin // groups, cout)) * 0.1

    def loss(kernel, x, index):
        def branch(kernel, x):
            return jnp.sum(conv(x, kernel, stride, groups) ** 2)
        if not in_switch:
            return branch(kernel, x)
        return lax.switch(index, [branch, lambda kernel, x: jnp.sum(x) * jnp.sum(kernel)],
                          kernel, x)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    index = jnp.int32(0)
    jax.block_until_ready(step(kernel, x, index))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(kernel, x, index))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    forms = [("im2col", im2col_conv, True),
             ("lax.conv", lax_conv, True),
             ("group_conv", ops.group_conv, True),
             ("top level", per_group_lax_conv, False)]
    print("| conv | " + " | ".join(name for name, _, _ in forms) + " |")
    print("|---" * (len(forms) + 1) + "|")
    for cin, cout, k, groups, stride, size in (
            (24, 96, 5, 1, 1, 16), (24, 96, 3, 1, 1, 16), (48, 96, 5, 3, 1, 16),
            (64, 256, 3, 8, 1, 8), (24, 96, 5, 1, 2, 16), (48, 96, 5, 3, 2, 16)):
        row = [f"{time_ms(conv, cin, cout, k, groups, stride, size, sw):.1f}"
               for _, conv, sw in forms]
        print(f"| {cin}->{cout} {k}x{k}/{stride}, {groups} group(s), {size} px | "
              + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
