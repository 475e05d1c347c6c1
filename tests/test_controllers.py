"""Tests of controllers/: TuNAS REINFORCE controller, schedules, rewards, random search."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import controllers as C
import search_spaces as S
import tasks

jax.config.update("jax_disable_most_optimizations", True)

SPACE = S.get_space("micro")
POS = {d.name: d.position for d in SPACE.decisions}
NO_DELAY = {"total_steps": 1000, "delay_fraction": 0.0, "op_warmup_fraction": 0.0,
            "filter_warmup_fraction": 0.0}


def _state(**overrides):
    return C.init(SPACE, {**NO_DELAY, **overrides})


# ---- controller ---------------------------------------------------------------
def test_init_logits_zero_and_padded():
    state = _state()
    valid = np.arange(5)[None, :] < np.asarray(SPACE.num_choices)[:, None]
    logits = np.asarray(state.logits)
    assert logits.shape == (SPACE.num_decisions, max(SPACE.num_choices))
    assert np.all(logits[valid] == 0.0)
    assert np.all(logits[~valid] == C.PADDED_LOGIT)
    assert float(state.baseline) == 0.0 and int(state.step) == 0


def test_sampling_from_zero_logits_is_uniform():
    state = _state()
    n = 4000
    indices = np.asarray(C.sample(state, jax.random.key(0), num=n))
    assert indices.shape == (n, SPACE.num_decisions) and indices.dtype == np.int32
    for d in SPACE.decisions:
        counts = np.bincount(indices[:, d.position], minlength=5)
        assert counts[d.num_choices:].sum() == 0, d.name  # padded slots never drawn
        expected = n / d.num_choices
        chi2 = float(((counts[:d.num_choices] - expected) ** 2 / expected).sum())
        # 99.9% quantile of chi-square with <= 4 degrees of freedom is 18.5.
        assert chi2 < 18.5, (d.name, counts)


def _skip_arch():
    values = {d.name: d.choices[0] for d in SPACE.decisions}
    values["stages.1.blocks.1.op"] = "skip"
    return np.asarray(SPACE.indices_for(values), np.int32)


def test_log_prob_counts_only_active_decisions():
    logits = jax.random.normal(jax.random.key(1), (SPACE.num_decisions, 5))
    logits = jnp.where(_state().logits == C.PADDED_LOGIT, C.PADDED_LOGIT, logits)

    def lp(idx):
        idx = jnp.asarray(idx)
        return float(C.log_prob(logits, idx, SPACE.active_mask(idx, xp=jnp)))

    skipped = _skip_arch()
    kernel = POS["stages.1.blocks.1.kernel_size"]
    assert not SPACE.active_mask(skipped)[kernel]
    other = skipped.copy()
    other[kernel] = 1
    assert lp(other) == lp(skipped)  # inactive decision: no effect

    # The same decision on a dw_ibn block is active and changes the log-prob.
    dw = skipped.copy()
    dw[POS["stages.1.blocks.1.op"]] = 0
    dw_other = dw.copy()
    dw_other[kernel] = 1
    assert abs(lp(dw) - lp(dw_other)) > 1e-4

    # Equals the hand sum of active per-decision log-softmax entries.
    log_p = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    mask = SPACE.active_mask(dw)
    manual = sum(log_p[i, dw[i]] for i in range(SPACE.num_decisions) if mask[i])
    assert lp(dw) == pytest.approx(manual, rel=1e-5)


def test_log_prob_gives_no_gradient_to_inactive_decisions():
    idx = jnp.asarray(_skip_arch())[None]
    active = SPACE.active_mask(idx, xp=jnp)
    grads = jax.grad(lambda lg: C.log_prob(lg, idx, active).sum())(_state().logits)
    grads = np.asarray(grads)
    for name in ("kernel_size", "expansion_ratio", "group_size"):
        assert np.all(grads[POS[f"stages.1.blocks.1.{name}"]] == 0.0), name
    assert np.any(grads[POS["stages.1.blocks.1.op"]] != 0.0)


def _toy_step(target_pos, target_choice, num, traces):
    def step(state, rng):
        traces.append(1)  # runs only while tracing
        indices = C.sample(state, rng, num=num)
        rewards = (indices[:, target_pos] == target_choice).astype(jnp.float32)
        return C.update(state, indices, rewards)

    return jax.jit(step)


def test_reinforce_learns_toy_reward_with_one_compile():
    # Reward 1 when stages.0.blocks.0.op is gc_ibn (choice 2 of 4), else 0.
    target_pos, target_choice = POS["stages.0.blocks.0.op"], 2
    state = _state(total_steps=300, base_lr=0.02)
    traces = []
    step = _toy_step(target_pos, target_choice, 8, traces)
    rng = jax.random.key(0)
    seen = set()
    for _ in range(300):
        rng, key = jax.random.split(rng)
        state, metrics = step(state, key)
        seen.add(np.asarray(C.sample(state, key, 8)).tobytes())
    prob = float(metrics["probabilities"][target_pos, target_choice])
    assert prob > 0.9, prob
    assert float(C.probabilities(state.logits)[target_pos, target_choice]) > prob - 1e-3
    assert int(C.argmax_architecture(state)[target_pos]) == target_choice
    assert len(seen) > 250  # many distinct architectures went through the step
    assert len(traces) == 1 and step._cache_size() == 1
    assert int(state.step) == 300
    # The baseline tracks the rising success rate.
    assert 0.8 < float(metrics["baseline"]) <= 1.0


def test_no_learning_during_delay_and_metrics():
    state = _state(total_steps=100, delay_fraction=0.25, op_warmup_fraction=0.25,
                   filter_warmup_fraction=0.25, base_lr=0.1)
    update = jax.jit(C.update)
    rng = jax.random.key(3)
    for _ in range(25):
        rng, key = jax.random.split(rng)
        idx = C.sample(state, key, 4)
        state, metrics = update(state, idx, jnp.asarray([1.0, 0.0, 0.5, 0.2]))
        assert float(metrics["learning_rate"]) == 0.0
    assert np.all(np.asarray(state.logits)[np.asarray(C.ControllerSpec(
        SPACE, state.spec.config).choice_mask())] == 0.0)
    state, metrics = update(state, idx, jnp.asarray([1.0, 0.0, 0.5, 0.2]))
    assert float(metrics["learning_rate"]) == pytest.approx(0.1)
    assert np.any(np.asarray(state.logits) != 0.0)
    uniform_entropy = sum(math.log(k) for k in SPACE.num_choices)
    assert float(metrics["entropy"]) == pytest.approx(uniform_entropy, rel=1e-5)
    probs = np.asarray(metrics["probabilities"])
    assert probs.shape == (SPACE.num_decisions, 5)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_baseline_is_debiased_ema_updated_before_advantage():
    update = jax.jit(C.update)
    state = _state()
    idx = C.sample(state, jax.random.key(0), 2)
    state, m1 = update(state, idx, jnp.asarray([0.4, 0.6]))
    # Debiased EMA after one step is the step mean; TuNAS takes the advantage after it.
    assert float(m1["baseline"]) == pytest.approx(0.5)
    assert float(m1["advantage"]) == pytest.approx(0.0, abs=1e-7)
    state, m2 = update(state, idx, jnp.asarray([1.0, 1.0]))
    expected = (0.95 * 0.05 * 0.5 + 0.05 * 1.0) / (0.95 * 0.05 + 0.05)
    assert float(m2["baseline"]) == pytest.approx(expected, rel=1e-6)
    assert float(m2["advantage"]) == pytest.approx(1.0 - expected, rel=1e-5)
    # Alternative reading: the advantage uses the previous step's baseline.
    prev = _state(baseline_includes_current=False)
    prev, p1 = update(prev, idx, jnp.asarray([0.4, 0.6]))
    assert float(p1["baseline"]) == pytest.approx(0.5)  # first step: falls back to the mean
    prev, p2 = update(prev, idx, jnp.asarray([1.0, 1.0]))
    assert float(p2["baseline"]) == pytest.approx(0.5)
    assert float(p2["advantage"]) == pytest.approx(0.5)


def _two_sample_update(credited=None):
    """One update from 2 architectures that differ at every decision, rewards 1 and 0
    (baseline 0.5: advantages +0.5 and -0.5, so the per-sample gradients differ)."""
    state = _state()
    idx = jnp.stack([jnp.zeros(SPACE.num_decisions, jnp.int32),
                     jnp.ones(SPACE.num_decisions, jnp.int32)])
    new, _ = C.update(state, idx, jnp.asarray([1.0, 0.0]), credited)
    active = SPACE.active_mask(np.asarray(idx)) if credited is None else (
        SPACE.active_mask(np.asarray(idx)) & np.asarray(credited))
    per_sample = [jax.grad(lambda lg, k=k, adv=adv: -adv * C.log_prob(lg, idx[k], active[k]))(
        state.logits) for k, adv in enumerate((0.5, -0.5))]
    return state, new, np.asarray(per_sample)


def test_adam_second_moment_averages_per_sample_squares():
    # TuNAS (tpu_optimizer_ops.apply_adam): v += (1 - b2) * mean_k(g_k^2), not mean(g)^2.
    state, new, g = _two_sample_update()
    b2 = state.spec.config.adam_b2
    assert np.abs(g[0] - g[1]).max() > 0.1  # the samples disagree
    np.testing.assert_allclose(np.asarray(new.opt_state.nu),
                               (1 - b2) * np.mean(g ** 2, axis=0), rtol=1e-5, atol=1e-12)
    # Squaring the mean would differ (here the samples' gradients cancel to 0 in part).
    assert np.abs((1 - b2) * np.mean(g, axis=0) ** 2
                  - np.asarray(new.opt_state.nu)).max() > 1e-5
    np.testing.assert_allclose(np.asarray(new.opt_state.mu), np.mean(g, axis=0) * (
        1 - state.spec.config.adam_b1), rtol=1e-5, atol=1e-12)


def test_warmed_decisions_get_no_credit():
    # TuNAS: a decision replaced by a warmup has a constant log-probability, so neither its
    # logits nor its Adam moments move.
    pos = POS["stages.0.blocks.0.kernel_size"]
    credited = np.ones((2, SPACE.num_decisions), bool)
    credited[:, pos] = False
    _, new, g = _two_sample_update(jnp.asarray(credited))
    assert np.all(np.asarray(new.logits)[pos, :2] == 0.0)
    assert np.all(np.asarray(new.opt_state.nu)[pos] == 0.0)
    assert np.all(g[:, pos] == 0.0)
    # Without the mask the same decision is credited (today's behaviour would fail above).
    _, full, _ = _two_sample_update()
    assert np.abs(np.asarray(full.logits)[pos, :2]).max() > 0.0
    # The other decisions learn as before.
    np.testing.assert_allclose(np.asarray(new.logits)[POS["stages.0.blocks.0.op"]],
                               np.asarray(full.logits)[POS["stages.0.blocks.0.op"]], rtol=1e-6)
    with pytest.raises(S.SpecError, match="credited"):
        C.update(_state(), jnp.zeros((2, SPACE.num_decisions), jnp.int32),
                 jnp.zeros(2), jnp.ones((1, SPACE.num_decisions), bool))


def test_config_errors_name_fields():
    with pytest.raises(ValueError, match="total_steps"):
        C.init(SPACE, {"delay_fraction": 0.0})
    with pytest.raises(ValueError, match=r"unknown fields.*'momentum'"):
        C.init(SPACE, {**NO_DELAY, "momentum": 0.9})
    with pytest.raises(ValueError, match=r"op_warmup_fraction.*delay_fraction"):
        C.Schedule(total_steps=10, delay_fraction=0.1, op_warmup_fraction=0.2)


# ---- schedules ----------------------------------------------------------------
def test_schedule_values_at_0_25_100_percent():
    sched = C.Schedule(total_steps=1000, base_lr=3e-4, batch_size=512)
    lr = lambda s: float(C.controller_learning_rate(s, sched))  # noqa: E731
    p_op = lambda s: float(C.op_warmup_probability(s, sched))  # noqa: E731
    p_f = lambda s: float(C.filter_warmup_probability(s, sched))  # noqa: E731
    assert (lr(0), p_op(0), p_f(0)) == (0.0, 1.0, 1.0)
    assert lr(249) == 0.0 and p_op(125) == pytest.approx(0.5)
    assert lr(250) == pytest.approx(6e-4) and p_op(250) == 0.0 and p_f(250) == 0.0
    assert lr(625) == pytest.approx(6e-4 * math.sqrt(10), rel=1e-5)  # exponential rise
    assert lr(1000) == pytest.approx(6e-3, rel=1e-5) and p_op(1000) == 0.0
    linear = C.Schedule(total_steps=1000, base_lr=3e-4, batch_size=512,
                        lr_increase_mode="linear")
    assert float(C.controller_learning_rate(625, linear)) == pytest.approx(3.3e-3, rel=1e-5)
    # jit-safe: a traced step gives the same numbers.
    assert float(jax.jit(C.controller_learning_rate, static_argnums=1)(1000, sched)) == \
        pytest.approx(6e-3, rel=1e-5)


def test_warmup_masks():
    sched = C.Schedule(total_steps=1000)
    is_op, is_filters = C.decision_tag_masks(SPACE)
    start = C.warmup_masks(jax.random.key(0), 0, SPACE, sched, num=16)
    np.testing.assert_array_equal(np.asarray(start.all_ops), np.broadcast_to(is_op, (16, 23)))
    np.testing.assert_array_equal(np.asarray(start.max_filters),
                                  np.broadcast_to(is_filters, (16, 23)))
    late = C.warmup_masks(jax.random.key(0), 250, SPACE, sched, num=16)
    assert not np.asarray(late.all_ops).any() and not np.asarray(late.max_filters).any()
    mid = C.warmup_masks(jax.random.key(0), 125, SPACE, sched, num=2000)
    frac = np.asarray(mid.all_ops)[:, is_op].mean()
    assert 0.47 < frac < 0.53  # p = 0.5

    largest = C.largest_filter_indices(SPACE)
    for d in SPACE.decisions:
        if d.tag == S.FILTERS:
            assert d.choices[largest[d.position]] == max(d.choices)
        else:
            assert largest[d.position] == -1
    indices = jnp.zeros((16, SPACE.num_decisions), jnp.int32)
    forced = np.asarray(C.apply_filter_warmup(indices, start, SPACE))
    np.testing.assert_array_equal(forced[:, is_filters], np.broadcast_to(
        largest[is_filters], (16, is_filters.sum())))
    assert np.all(forced[:, ~is_filters] == 0)


# ---- rewards ------------------------------------------------------------------
@pytest.mark.parametrize(("name", "latency_ms", "expected"), [
    ("abs", 12.0, 0.7 - 0.1 * 0.2),
    ("abs", 8.0, 0.7 - 0.1 * 0.2),
    ("mnas", 12.0, 0.7 * 1.2 ** -0.1),  # 0.687354
    ("mnas", 8.0, 0.7 * 0.8 ** -0.1),  # 0.715796: faster is rewarded
    ("mnas_hard", 12.0, 0.7 * 1.2 ** -0.1),
    ("mnas_hard", 8.0, 0.7),  # no bonus below the target
])
def test_rewards_match_hand_values(name, latency_ms, expected):
    fn = C.get_reward_fn(name)
    assert float(fn(0.7, latency_ms, 10.0, -0.1)) == pytest.approx(expected, rel=1e-6)
    bound = C.make_reward_fn(name, target_latency_ms=10.0, beta=-0.1)
    batch = bound(jnp.asarray([0.7, 0.7]), jnp.asarray([latency_ms, latency_ms]))
    np.testing.assert_allclose(np.asarray(batch), expected, rtol=1e-6)


def test_reward_errors():
    with pytest.raises(ValueError, match=r"reward: 'latency'.*abs.*mnas.*mnas_hard"):
        C.get_reward_fn("latency")
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(ValueError, match="target_latency_ms"):
            C.make_reward_fn("abs", target_latency_ms=bad)


# ---- multi-hardware latency metrics --------------------------------------------
MULTI_NUMPY = {"average": lambda r: np.mean(r, -1), "worst": lambda r: np.max(r, -1),
               "geomean": lambda r: np.exp(np.mean(np.log(r), -1))}


@pytest.mark.parametrize("metric", sorted(MULTI_NUMPY))
def test_combined_latency_ratio_matches_numpy(metric):
    ratios = np.random.default_rng(3).uniform(0.5, 1.8, (6, 3))  # [K, targets]
    got = np.asarray(jax.jit(lambda r: C.combine_latency_ratios(r, metric))(ratios))
    np.testing.assert_allclose(got, MULTI_NUMPY[metric](ratios), rtol=1e-6)
    # One target: every metric is that target's ratio.
    np.testing.assert_allclose(np.asarray(C.combine_latency_ratios(ratios[:, :1], metric)),
                               ratios[:, 0], rtol=1e-6)


def test_metrics_differ_and_order_as_means_do():
    ratios = np.asarray([[0.5, 1.0, 2.0]])
    values = {m: float(C.combine_latency_ratios(ratios, m)[0]) for m in MULTI_NUMPY}
    assert values["geomean"] == pytest.approx(1.0)
    assert values["average"] == pytest.approx(3.5 / 3)
    assert values["worst"] == pytest.approx(2.0)


def test_abs_reward_on_the_combined_ratio():
    """The search's reward: abs of the combined ratio, Q + beta * |r - 1| (target 1); for
    one target it is the single-device abs reward Q + beta * |T / T0 - 1|."""
    quality = np.asarray([0.7, 0.9])
    latency_ms = np.asarray([[0.02, 0.10, 1.2], [0.015, 0.16, 0.8]])
    t0_ms = np.asarray([0.0176, 0.134, 0.986])
    for metric, combine in MULTI_NUMPY.items():
        r = C.combine_latency_ratios(latency_ms / t0_ms, metric)
        expected = quality - 0.5 * np.abs(combine(latency_ms / t0_ms) - 1.0)
        np.testing.assert_allclose(np.asarray(C.abs_reward(quality, r, 1.0, -0.5)), expected,
                                   rtol=1e-6)
    single = C.combine_latency_ratios(latency_ms[:, :1] / t0_ms[:1], "worst")
    np.testing.assert_allclose(np.asarray(C.abs_reward(quality, single, 1.0, -0.5)),
                               np.asarray(C.abs_reward(quality, latency_ms[:, 0], t0_ms[0], -0.5)),
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"multi_hardware_metric: 'median'.*average"):
        C.combine_latency_ratios(latency_ms, "median")


# ---- random search ------------------------------------------------------------
def _macs_latency_ms(indices):
    """A real cost: MACs of the decoded network at 1 GMAC/s."""
    return np.array([
        tasks.describe(SPACE.decode(row), SPACE.default_image_size, SPACE.default_num_classes).macs
        / 1e6 for row in indices])


def test_random_search_respects_band_and_is_deterministic():
    kwargs = {"num": 20, "lo_ms": 5.0, "hi_ms": 6.0, "batch_size": 64}
    idx, ms = C.random_search(SPACE, _macs_latency_ms, seed=7, **kwargs)
    assert idx.shape == (20, SPACE.num_decisions) and idx.dtype == np.int32
    assert np.all((ms >= 5.0) & (ms <= 6.0))
    np.testing.assert_allclose(_macs_latency_ms(idx), ms)
    assert len({r.tobytes() for r in idx}) == 20
    # Distinct networks, not just distinct vectors: inactive decisions do not count.
    active = SPACE.active_mask(idx)
    assert len({np.where(m, r, -1).tobytes() for r, m in zip(idx, active, strict=True)}) == 20
    idx2, ms2 = C.random_search(SPACE, _macs_latency_ms, seed=7, **kwargs)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_array_equal(ms, ms2)
    idx3, _ = C.random_search(SPACE, _macs_latency_ms, seed=8, **kwargs)
    assert not np.array_equal(idx, idx3)


def test_random_search_unreachable_band_says_band_and_range():
    with pytest.raises(ValueError, match=r"\[1000.0, 2000.0\] ms after 128 .*ranged \["):
        C.random_search(SPACE, _macs_latency_ms, num=1, lo_ms=1000.0, hi_ms=2000.0,
                        max_tries=128, batch_size=64)


def test_sample_uniform_in_range_under_jit():
    idx = np.asarray(jax.jit(C.sample_uniform, static_argnums=(1, 2))(
        jax.random.key(0), SPACE, 500))
    assert idx.shape == (500, SPACE.num_decisions)
    assert np.all(idx >= 0) and np.all(idx < np.asarray(SPACE.num_choices))
    assert all(len(np.unique(idx[:, i])) == k for i, k in enumerate(SPACE.num_choices))
