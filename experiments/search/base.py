"""Shared defaults of the one-shot search configs (variants import this and override).

Run (a variant, not this file):
    tunas-jax search --config experiments/search/micro_digits.py --workdir /tmp/search_micro
Override any field with `--config.<field>=<value>`, nested ones with dots, e.g.
`--config.steps=200 --config.dataset.image_size=16 --config.controller.delay_fraction=0.2`.
Every field of a loaded config must exist here: a new key in a variant is a typo.
"""

import ml_collections

from tunas_jax.data import default_dataset_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Search space (search_spaces.get_space name) and hardware target (cost_models.get_target).
    config.space = "micro"
    # Task (tasks.get_task name): the head, loss, reward quality and metrics.
    config.task = "classification"
    config.target = "pixel6_edgetpu"

    # Input data: shared weights train on dataset.train_split, the reward comes from
    # dataset.valid_split (held out of the training split). See tunas_jax.data.
    config.dataset = default_dataset_config()

    # Learned latency regressor (cost_models.regressor) evaluated inside the jitted step.
    config.cost_model = ml_collections.ConfigDict()
    # Its workdir ('' = <search workdir>/cost_model). Point several searches at one
    # shared folder to train it once.
    config.cost_model.workdir = ""
    # Config file used to train it when the workdir holds none (relative paths are
    # tried from the current directory, then from the repository root).
    config.cost_model.config = "experiments/cost_models/micro_pixel6.py"
    # Field overrides of that config for the build (e.g. fewer architectures).
    config.cost_model.overrides = ml_collections.ConfigDict()

    # Which latency the reward and the target use: 'end_to_end' (one whole inference) or
    # 'layers' (minus the fixed per-inference overhead and I/O, which are the same for
    # every architecture; for spaces so small that the fixed part dominates). See
    # cost_models/latency_metric.py.
    config.latency_metric = "end_to_end"
    # Latency target T0 of the reward, in ms of latency_metric on the target (> 0).
    config.target_latency_ms = 0.41
    # Reward: 'abs' (TuNAS default: Q + beta |T/T0 - 1|), 'mnas', 'mnas_hard'.
    config.reward = "abs"
    # Reward beta; negative so that missing the target costs reward (TuNAS: -0.10).
    config.reward_beta = -0.10

    # Supernet execution: a layer of at most this many configurations runs the child's
    # exact shapes (one lax.switch branch each, cost follows the child); a layer of more
    # is masked as TuNAS (the widest branch per op and kernel size, the child's widths
    # traced), which bounds compile time. 0 = exact everywhere. See supernet/plan.py.
    config.max_branches_per_layer = 64

    # Number of search steps (one supernet + one controller update each).
    config.steps = 1000
    # Training batch (all devices together; each device trains its own
    # architectures_per_device architectures, each on
    # batch_size / (num_devices * architectures_per_device) examples).
    config.batch_size = 64
    # K: architectures sampled per device per step, each trained on its share of the
    # batch and rewarded on its share of the validation batch; the controller averages
    # the devices x K rewards (TuNAS: one per TPU core, 32 per step on a v2-32). More
    # architectures per step lower the reward noise of each controller update at the
    # same images per step; K runs one after another on the device.
    config.architectures_per_device = 1
    # Validation (reward) batch; 0 = 4 x batch_size (TuNAS).
    config.valid_batch_size = 0

    # Shared-weight optimizer.
    config.optimizer = ml_collections.ConfigDict()
    # 'rmsprop' (TuNAS ImageNet), 'momentum' (SGD with Nesterov-free momentum) or 'adam'.
    config.optimizer.name = "rmsprop"
    # Peak learning rate at batch 256; scaled by batch_size / 256 (TuNAS: 0.165).
    config.optimizer.base_learning_rate = 0.165
    # Fraction of the steps warming the learning rate up linearly from 0 (then cosine to 0).
    config.optimizer.warmup_fraction = 0.025
    # RMSProp decay, momentum (also SGD's momentum) and epsilon (TuNAS: 0.9, 0.9, 1.0).
    config.optimizer.decay = 0.9
    config.optimizer.momentum = 0.9
    config.optimizer.epsilon = 1.0
    # L2 weight decay (TuNAS: 4e-5) on the conv kernels each step's architectures used
    # (never batch norm, the task head, or weights off the sampled paths).
    config.optimizer.weight_decay = 4e-5
    # Label smoothing of the training cross-entropy (TuNAS: 0.1).
    config.optimizer.label_smoothing = 0.1

    # Controller: controllers.ReinforceConfig and controllers.Schedule fields
    # (total_steps and batch_size are filled in from steps and batch_size).
    config.controller = ml_collections.ConfigDict()
    # Controller LR at batch 256 before the 10x rise (TuNAS: 0.0003).
    config.controller.base_lr = 3e-4
    # Fraction of steps with controller LR 0 while the shared weights warm up.
    config.controller.delay_fraction = 0.25
    # LR multiplier reached at the last step, and how it rises ('exponential' | 'linear').
    config.controller.lr_increase = 10.0
    config.controller.lr_increase_mode = "exponential"
    # Op / filter warmup: p goes 1 -> 0 over this fraction of steps (<= delay_fraction).
    config.controller.op_warmup_fraction = 0.25
    config.controller.filter_warmup_fraction = 0.25
    # EMA momentum of the reward baseline (TuNAS: 0.95).
    config.controller.baseline_momentum = 0.95
    # Adam moments of the controller (TuNAS: b1 = 0, b2 = 0.999).
    config.controller.adam_b1 = 0.0
    config.controller.adam_b2 = 0.999
    # Weight of the active-path entropy bonus (TuNAS: 0).
    config.controller.entropy_weight = 0.0

    # Seed of the weights, the architecture samples and the data order.
    config.seed = 0
    # Steps between metrics lines (metrics.jsonl, TensorBoard) and between checkpoints.
    config.log_every = 10
    config.checkpoint_every = 200
    # Checkpoints kept (the newest ones).
    config.keep_checkpoints = 2
    # Devices to search on (architectures_per_device each); 0 = all local devices.
    config.num_devices = 0
    # JAX persistent compilation cache: '' = ~/.cache/tunas_jax/jax_cache, 'none' = off.
    # A rerun of the same search then skips the compile (minutes for big spaces).
    config.compilation_cache_dir = ""
    # Grain threads preparing batches.
    config.data_threads = 2
    return config
