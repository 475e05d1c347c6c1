"""Forms of a stride-1 kxk conv inside `lax.switch` on XLA:CPU (value + gradients), and
why the supernet uses `supernet.ops.conv_s1`.

    python benchmarks/bench_conv_in_switch.py

Times one jitted value-and-grad (input and kernel) of sum(conv(x)^2) for
fused- and GC-IBN-sized convs (batch 64, 16x16), the conv in branch 0 of a
switch whose index is a traced argument (as in the supernet):
- `im2col`: stacked shifted slices + einsum, autodiff'd (`ops.im2col_conv`);
- `lax.conv`: autodiff of `lax.conv` with `feature_group_count` (NOTES §5);
- `conv_s1`: per-group `lax.conv` forward, VJP written out (`ops.conv_s1`);
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


def lax_conv(x: jax.Array, kernel: jax.Array, groups: int) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=groups)


def time_ms(conv, cin: int, cout: int, k: int, groups: int, in_switch: bool,
            repeats: int = 10) -> float:
    x = jax.random.normal(jax.random.key(0), (64, 16, 16, cin))
    kernel = jax.random.normal(jax.random.key(1), (k, k, cin // groups, cout)) * 0.1

    def loss(kernel, x, index):
        def branch(kernel, x):
            return jnp.sum(conv(x, kernel, groups) ** 2)
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
    forms = [("im2col", lambda x, w, g: ops.im2col_conv(x, w, 1, g), True),
             ("lax.conv", lax_conv, True),
             ("conv_s1", ops.conv_s1, True),
             ("top level", ops.conv_s1.__wrapped__, False)]
    for cin, cout, k, groups in ((24, 96, 5, 1), (24, 96, 3, 1), (48, 96, 5, 3), (64, 256, 3, 8)):
        row = [f"{name} {time_ms(conv, cin, cout, k, groups, sw):.1f}"
               for name, conv, sw in forms]
        print(f"{cin}->{cout} {k}x{k} g{groups} (ms): " + ", ".join(row), flush=True)


if __name__ == "__main__":
    main()
