"""Forms of a full kxk conv inside `lax.switch` on XLA:CPU (value + gradient), and why the
supernet keeps slices + einsum.

    python benchmarks/bench_conv_in_switch.py

Times one jitted value-and-grad (input and kernel) of sum(conv(x)^2) for a
fused-IBN-sized conv (batch 64, 16x16), the conv in branch 0 of a switch whose
index is a traced argument (as in the supernet):
- `slices+einsum`: `supernet.ops.group_conv` (what the supernet runs);
- `lax.conv in switch`: autodiff of `lax.conv` (NOTES §5's slow weight gradient);
- `written-out VJP`: `lax.conv` forward and input gradient, the weight
  gradient as one matmul per kernel tap (the fast parts of both);
- `lax.conv top level`: no switch, the standalone model's cost.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from supernet import ops

DN = ("NHWC", "HWIO", "NHWC")


def lax_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=DN)


@jax.custom_vjp
def written_out(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax_conv(x, kernel)


def _fwd(x, kernel):
    return lax_conv(x, kernel), (x, kernel)


def _bwd(residuals, g):
    x, kernel = residuals
    dx = lax_conv(g, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
    taps = ops._taps(x, kernel.shape[0], 1)
    dk = jnp.stack([jnp.einsum("nhwc,nhwo->co", tap, g) for tap in taps])
    return dx, dk.reshape(kernel.shape)


written_out.defvjp(_fwd, _bwd)


def time_ms(conv, cin: int, cout: int, k: int, in_switch: bool, repeats: int = 15) -> float:
    x = jax.random.normal(jax.random.key(0), (64, 16, 16, cin))
    kernel = jax.random.normal(jax.random.key(1), (k, k, cin, cout)) * 0.1

    def loss(kernel, x, index):
        def branch(kernel, x):
            return jnp.sum(conv(x, kernel) ** 2)
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
    forms = [("slices+einsum", lambda x, w: ops.group_conv(x, w, 1, 1), True),
             ("lax.conv in switch", lax_conv, True),
             ("written-out VJP", written_out, True),
             ("lax.conv top level", lax_conv, False)]
    for cin, cout, k in ((24, 96, 5), (24, 96, 3)):
        row = [f"{name} {time_ms(conv, cin, cout, k, sw):.1f} ms" for name, conv, sw in forms]
        print(f"{cin}->{cout} {k}x{k}: " + ", ".join(row))


if __name__ == "__main__":
    main()
