"""Forward+backward speed of grouped and depthwise convs in three forms, on this machine.

Why: earlier measurements on these machines found XLA:CPU `feature_group_count`
grouped convs slow. The standalone model (`supernet/layers.py`) picks its conv form
from these numbers.
Each form computes the same conv (checked against form (a) before timing):

- `grouped` (a): `lax.conv_general_dilated(..., feature_group_count=g)`.
- `split`   (b): one full conv per group on a channel slice, then concat.
- `patches` (c): `lax.conv_general_dilated_patches` + one einsum over groups.
- `shift`   (depthwise only): sum over the k*k taps of shifted input * weight.

Timed: jit(grad) of sum(conv(x, w)**2) w.r.t. both x and w (input and weight
gradients, as in training), median of `--repeats` runs after a warm-up.

Run:
    /work/venv/bin/python benchmarks/bench_group_conv.py            # defaults below
    /work/venv/bin/python benchmarks/bench_group_conv.py --batch 8 --size 8 --cin 192 \
        --cout 768 --groups 32 96      # the many-group convs of the v2 space

Measured on the 2-core dev CPU (shared, so absolute times are noisy; the
ratios between forms timed back to back are what counts), fwd+bwd per step:
    group conv 64->256 16x16 b64 k3: split fastest; grouped (feature_group_count)
        7.4x (g=2), 13.5x (g=4), 34x (g=8) slower; patches 12-20x slower.
    128->512, g=16: grouped 24x, patches 15x slower than split.
    192->768 8x8 b8, g=32 / g=96: grouped 176x / 131x, patches 25x / 7.7x slower.
    depthwise c=256 16x16 b64: shift fastest; grouped 4.4x (k3) / 2.8x (k5)
        slower; patches 46x (k3) / 433x (k5) slower.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DIMS = ("NHWC", "HWIO", "NHWC")


def conv_grouped(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DIMS,
                                    feature_group_count=groups)


def conv_split(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
    xs = jnp.split(x, groups, axis=-1)
    ws = jnp.split(w, groups, axis=-1)
    return jnp.concatenate([conv_grouped(xi, wi, 1) for xi, wi in zip(xs, ws, strict=True)],
                           axis=-1)


def conv_patches(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
    k, _, cin_g, cout = w.shape
    # Patch features come out channel-major: index = c * k * k + kh * k + kw.
    p = lax.conv_general_dilated_patches(x, (k, k), (1, 1), "SAME", dimension_numbers=DIMS)
    n, h, wd, _ = p.shape
    p = p.reshape(n, h, wd, groups, cin_g, k, k)
    wg = w.reshape(k, k, cin_g, groups, cout // groups)
    y = jnp.einsum("nhwgcab,abcgo->nhwgo", p, wg)
    return y.reshape(n, h, wd, cout)


def depthwise_patches(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
    k = w.shape[0]
    p = lax.conv_general_dilated_patches(x, (k, k), (1, 1), "SAME", dimension_numbers=DIMS)
    n, h, wd, _ = p.shape
    p = p.reshape(n, h, wd, x.shape[-1], k, k)
    return jnp.einsum("nhwcab,abc->nhwc", p, w[:, :, 0, :])


def depthwise_shift(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
    k = w.shape[0]
    pad = (k - 1) // 2
    xp = jnp.pad(x, ((0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)))
    h, wd = x.shape[1], x.shape[2]
    out = jnp.zeros_like(x)
    for a in range(k):
        for b in range(k):
            out = out + xp[:, a:a + h, b:b + wd, :] * w[a, b, 0, :]
    return out


def time_grad(fn: Callable, x: jax.Array, w: jax.Array, groups: int, repeats: int) -> float:
    loss = lambda x, w: jnp.sum(fn(x, w, groups) ** 2)  # noqa: E731
    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jax.block_until_ready(step(x, w))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(step(x, w))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_same(fns: dict[str, Callable], x: jax.Array, w: jax.Array, groups: int) -> None:
    ref = np.asarray(conv_grouped(x, w, groups))
    for name, fn in fns.items():
        np.testing.assert_allclose(np.asarray(fn(x, w, groups)), ref, rtol=2e-3, atol=2e-3,
                                   err_msg=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=16, help="feature map height = width (px)")
    parser.add_argument("--cin", type=int, default=64)
    parser.add_argument("--cout", type=int, default=256)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--dw-channels", type=int, default=256)
    parser.add_argument("--dw-kernels", type=int, nargs="+", default=[3],
                        help="k5 works too, but its patches form takes ~2 min per step")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(keys[0], (args.batch, args.size, args.size, args.cin))
    k = args.kernel
    print(f"device={jax.devices()[0].platform} batch={args.batch} {args.size}x{args.size} "
          f"k{k}; fwd+bwd (dx and dw) seconds per step, median of {args.repeats}")

    full_w = jax.random.normal(keys[1], (k, k, args.cin, args.cout)) * 0.05
    t_full = time_grad(conv_grouped, x, full_w, 1, args.repeats)
    print(f"full conv {args.cin}->{args.cout}: {t_full * 1e3:8.2f} ms (reference)")

    forms = {"grouped": conv_grouped, "split": conv_split, "patches": conv_patches}
    for g in args.groups:
        w = jax.random.normal(keys[2], (k, k, args.cin // g, args.cout)) * 0.05
        check_same(forms, x, w, g)
        times = {name: time_grad(fn, x, w, g, args.repeats) for name, fn in forms.items()}
        best = min(times, key=times.get)
        row = "  ".join(f"{n}={t * 1e3:8.2f} ms ({t / times[best]:4.1f}x)"
                        for n, t in times.items())
        print(f"group conv g={g:<3d} {row}  fastest={best}; "
              f"grouped/full={times['grouped'] / t_full:.2f}")

    c = args.dw_channels
    xd = jax.random.normal(keys[0], (args.batch, args.size, args.size, c))
    dw_forms = {"grouped": conv_grouped, "shift": depthwise_shift, "patches": depthwise_patches}
    for kd in args.dw_kernels:
        w = jax.random.normal(keys[3], (kd, kd, 1, c)) * 0.1
        check_same(dw_forms, xd, w, c)
        times = {name: time_grad(fn, xd, w, c, args.repeats) for name, fn in dw_forms.items()}
        best = min(times, key=times.get)
        row = "  ".join(f"{n}={t * 1e3:8.2f} ms ({t / times[best]:4.1f}x)"
                        for n, t in times.items())
        print(f"depthwise c={c} k{kd}  {row}  fastest={best}")


if __name__ == "__main__":
    main()
