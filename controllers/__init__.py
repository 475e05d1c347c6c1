"""Architecture controllers: the TuNAS REINFORCE controller, its schedules, the
hardware-aware rewards, and the random-search baseline. The REINFORCE
controller is pure JAX and functional (explicit state pytrees), so its update
runs inside the one jitted search step; multi-trial strategies implement the
host-side propose/observe interface (`controllers.strategy`), among them the
OSS Vizier back-end (`controllers.vizier_*`, the `vizier` extra, imported only
when a `vizier` strategy is built). Imports `search_spaces` (and Vizier)."""

from controllers.random_search import random_search, sample_uniform
from controllers.reinforce import (
    PADDED_LOGIT,
    ControllerSpec,
    ControllerState,
    ReinforceConfig,
    argmax_architecture,
    decision_entropies,
    init,
    log_prob,
    probabilities,
    sample,
    update,
)
from controllers.rewards import (
    DEFAULT_BETA,
    DEFAULT_MULTI_HARDWARE_METRIC,
    DEFAULT_REWARD,
    MULTI_HARDWARE_METRICS,
    REWARDS,
    abs_reward,
    check_multi_hardware_metric,
    check_target_latency_ms,
    combine_latency_ratios,
    get_reward_fn,
    make_reward_fn,
    mnas_hard_reward,
    mnas_reward,
)
from controllers.schedules import (
    Schedule,
    WarmupMasks,
    apply_filter_warmup,
    controller_learning_rate,
    decision_tag_masks,
    filter_warmup_probability,
    largest_filter_indices,
    op_warmup_active,
    op_warmup_probability,
    warmup_masks,
)
from controllers.strategy import (
    RandomStrategy,
    Strategy,
    Trial,
    get_strategy,
    register_strategy,
)

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_MULTI_HARDWARE_METRIC",
    "DEFAULT_REWARD",
    "MULTI_HARDWARE_METRICS",
    "PADDED_LOGIT",
    "REWARDS",
    "ControllerSpec",
    "ControllerState",
    "RandomStrategy",
    "ReinforceConfig",
    "Schedule",
    "Strategy",
    "Trial",
    "WarmupMasks",
    "abs_reward",
    "apply_filter_warmup",
    "argmax_architecture",
    "check_multi_hardware_metric",
    "check_target_latency_ms",
    "combine_latency_ratios",
    "controller_learning_rate",
    "decision_entropies",
    "decision_tag_masks",
    "filter_warmup_probability",
    "get_reward_fn",
    "get_strategy",
    "init",
    "largest_filter_indices",
    "log_prob",
    "make_reward_fn",
    "mnas_hard_reward",
    "mnas_reward",
    "op_warmup_active",
    "op_warmup_probability",
    "probabilities",
    "random_search",
    "register_strategy",
    "sample",
    "sample_uniform",
    "update",
    "warmup_masks",
]
