"""The schema and defaults of every config `tunas-jax` reads: search, train, cost model.

The library owns them so that it can validate a config and list its fields in
`--help` without importing config files; the files under `experiments/` are
variants that start from these functions (`experiments/*/base.py`) and change
values, never add fields: an unknown field in a loaded config is a typo. Every
field is commented here, once.
"""

from __future__ import annotations

import inspect

import ml_collections
from ml_collections import config_dict

from tasks import Segmentation
from tunas_jax.data import default_dataset_config


def search_defaults() -> ml_collections.ConfigDict:
    """Every field of a `tunas-jax search` config, with its default."""
    config = ml_collections.ConfigDict()
    # Search space (search_spaces.get_space name).
    config.space = "micro"
    # A topology declared here instead of a space module (search_spaces/declared.py):
    # {'name', 'image_size', 'num_classes', 'stem', 'stages', 'head'}, a list for each
    # searchable parameter. Empty = `space` names a registered space; set = `space` must
    # be the declaration's name.
    config.topology = ml_collections.ConfigDict()
    # Task (tasks.get_task name): the head, loss, reward quality and metrics.
    config.task = "classification"
    # The segmentation task's settings (read when task = 'segmentation').
    config.segmentation = segmentation_defaults()
    # Hardware targets (cost_models.get_target names), a list: one target = a list of one.
    # Several = a multi-hardware search: each target's latency is normalized by its own
    # target latency (target_latencies_ms) and the ratios are combined into one
    # (multi_hardware_metric) that the reward uses.
    config.targets = ("pixel6_edgetpu",)
    # How several targets' latency ratios T_i / T0_i combine: 'average' (mean, the
    # average case), 'geomean' (geometric mean) or 'worst' (max, the worst case).
    # See controllers/rewards.py. Unused with one target.
    config.multi_hardware_metric = "average"

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
    # Several targets: one regressor per target, each in <workdir above>/<target>, trained
    # from configs[i] for targets[i] (one per target, in the order of config.targets);
    # () = `config` above with its target set to each target. Unused with one target.
    config.cost_model.configs = ()
    # Fields of that config to override for the build (e.g. fewer architectures):
    # every cost-model field, typed, None = keep the config file's value.
    config.cost_model.overrides = cost_model_overrides()

    # Which latency the reward and the target use: 'end_to_end' (one whole inference) or
    # 'layers' (minus the fixed per-inference overhead and I/O, which are the same for
    # every architecture; for spaces so small that the fixed part dominates). See
    # cost_models/latency_metric.py.
    config.latency_metric = "end_to_end"
    # Latency target T0 of the reward, in ms of latency_metric on the target (> 0); for
    # one target.
    config.target_latency_ms = 0.41
    # Several targets: one T0_i per target, in the order of config.targets (> 0 each;
    # target_latency_ms is then unused). Must stay () with one target.
    config.target_latencies_ms = ()
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
    # What the decay reaches: 'sampled_kernels' (TuNAS: the L2 above, masked to the conv
    # kernel entries each step's architectures read) or 'all_weights' (optax's decoupled
    # decay of every shared weight every step, the unsampled ones too: this project's
    # behaviour before issue 18, kept for ablations such as benchmarks/supernet_ranking.py's
    # "before" run).
    config.optimizer.weight_decay_scope = "sampled_kernels"
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
    # Whether decisions a warmup replaced (op warmup's mixed ones, filter warmup's forced
    # largest) still get REINFORCE credit for the choice the controller sampled (TuNAS:
    # False; True is this project's behaviour before issue 18, for ablations).
    config.controller.credit_warmed_decisions = False

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


def train_defaults() -> ml_collections.ConfigDict:
    """Every field of a `tunas-jax train` / `random-baseline` config, with its default.

    `architecture` is what to train: an architecture JSON file (`search_spaces.load`,
    e.g. the `architecture.json` a search writes) or `preset:<name>` for a named
    network of `search_spaces.PRESETS` (e.g. `preset:mobilenet_edgetpu_v2_s`). It
    may stay empty when `init_from` names a search workdir: the search's
    architecture is used.
    """
    config = ml_collections.ConfigDict()
    # What to train: an architecture JSON path or 'preset:<name>' (see the module docstring).
    # No default: a training run of "some" network is never what was meant.
    config.architecture = ""
    # A search workdir whose supernet weights initialize the model (weight inheritance);
    # '' = train from scratch. Needs an architecture of the search's space.
    config.init_from = ""
    # Task (tasks.get_task name): the head, loss and evaluation metrics.
    config.task = "classification"
    # The segmentation task's settings (read when task = 'segmentation').
    config.segmentation = segmentation_defaults()

    # Input data: the `tunas_jax.data` section. Training reads all of `train_split`
    # (the search's held-out valid_split is not needed here) and evaluates on eval_split.
    config.dataset = default_dataset_config()
    config.dataset.train_split = "train"
    # Data loading threads (grain), for training and evaluation.
    config.num_threads = 2

    # Length: epochs of train_split; num_steps > 0 overrides it (smoke tests).
    config.num_epochs = 30
    config.num_steps = 0
    config.batch_size = 128
    # Evaluation batch size (the last batch is padded and masked).
    config.eval_batch_size = 256
    # Evaluate on eval_split every this many epochs, and at the end.
    config.eval_every_epochs = 1.0
    # Checkpoint every this many steps (0 = at each evaluation only) and at the end.
    config.checkpoint_every_steps = 0
    # Checkpoints kept (orbax max_to_keep).
    config.keep_checkpoints = 2
    # Train-loss logging period in steps (TensorBoard, metrics.jsonl, progress bar).
    config.log_every_steps = 20
    # Preemption drill: stop after this global step as if killed (checkpoint first);
    # rerunning the same command continues. 0 = off.
    config.stop_after_steps = 0

    # Optimizer: 'rmsprop' (TF1 RMSProp: mean square starts at 1, eps inside the sqrt,
    # as the MobileNetEdgeTPU/EfficientNet TPU recipes), 'sgd' or 'adam'.
    config.optimizer = "rmsprop"
    # Peak learning rate per `lr_batch_base` examples; the peak is scaled linearly
    # with batch_size / lr_batch_base.
    config.learning_rate = 0.008
    config.lr_batch_base = 128
    # Momentum of rmsprop and sgd (adam's beta1).
    config.momentum = 0.9
    # RMSProp decay of the mean square (rho).
    config.rmsprop_decay = 0.9
    # Epsilon of rmsprop and adam.
    config.epsilon = 0.001
    # Nesterov momentum (sgd only).
    config.nesterov = True
    # Schedule after the warmup: 'cosine' (to 0 at the end) or 'exponential'
    # (staircase: x decay_rate every decay_epochs, the published MobileNetEdgeTPU schedule).
    config.schedule = "cosine"
    config.decay_epochs = 2.4
    config.decay_rate = 0.97
    # Linear warmup from 0 to the peak learning rate, in epochs.
    config.warmup_epochs = 1.0
    # L2 regularization of conv and dense kernels (not batch norm, not biases), added to
    # the gradient as weight_decay * w (= a loss of weight_decay / 2 * |w|^2).
    config.weight_decay = 1e-5
    # Label smoothing of the cross-entropy (0 = one-hot targets).
    config.label_smoothing = 0.1
    # Dropout before the classifier.
    config.dropout_rate = 0.0
    # Exponential moving average of the weights, with TF's warmup
    # min(ema_decay, (1 + step) / (10 + step)); evaluation and result.json use the
    # averaged weights. 0 = off.
    config.ema_decay = 0.0
    # Seed of the initialization, the data order/augmentation and dropout.
    config.seed = 0

    # Cost report in result.json: the simulated hardware targets (a list; the first one's
    # latency is `simulated_latency_ms`, every one's in `simulated_latency_ms_by_target`),
    # and a trained latency regressor workdir (`tunas-jax train-cost-model`) of the first
    # target for predicted_latency_ms ('' = none).
    config.targets = ("pixel6_edgetpu",)
    config.cost_model_workdir = ""
    # Latency reported as simulated_latency_ms / predicted_latency_ms: 'end_to_end' or
    # 'layers' (without the fixed per-inference part; cost_models/latency_metric.py).
    # Use the metric of the search whose architectures you compare.
    config.latency_metric = "end_to_end"
    return config


def cost_model_defaults() -> ml_collections.ConfigDict:
    """Every field of a `tunas-jax train-cost-model` config (the learned latency regressor)."""
    config = ml_collections.ConfigDict()
    # Search space (search_spaces.get_space name) and hardware target (cost_models.hardware,
    # or 'host_cpu': this machine's CPU, measured).
    config.space = "micro"
    # A topology declared here instead of a space module (search_spaces/declared.py):
    # {'name', 'image_size', 'num_classes', 'stem', 'stages', 'head'}, a list for each
    # searchable parameter. Empty = `space` names a registered space; set = `space` must
    # be the declaration's name.
    config.topology = ml_collections.ConfigDict()
    config.target = "pixel6_edgetpu"
    # Input resolution and classes to cost the networks at; None = the space's defaults.
    config.image_size = config_dict.placeholder(int)
    config.num_classes = config_dict.placeholder(int)
    # The task whose head is costed with each network, as its `Task.to_json()` JSON text
    # ('' = classification of num_classes). A search sets it for a task other than
    # classification (e.g. segmentation, whose head reads the backbone's endpoints).
    config.task = ""

    # Dataset: simulated when the file is missing; None = <workdir>/dataset.npz.
    config.dataset_path = config_dict.placeholder(str)
    # Architectures to simulate (the space's presets first, then uniform samples).
    config.num_architectures = 50_000
    # Seed of the architecture sampling (the dataset is a function of it).
    config.dataset_seed = 0
    # Simulation processes (or Ray actors); 0 = all cores (all of the Ray cluster's CPUs).
    config.workers = 0
    # Where the dataset is simulated: 'local' (this machine's processes) or 'ray'
    # (an actor pool on a Ray cluster: the `ray` extra; cost_models/ray_executor.py).
    config.executor = "local"
    # Ray cluster address for executor 'ray' ('' = the running one, else start a local one).
    config.ray_address = ""
    # Build the dataset on this cost service instead ('HOST:PORT' or a comma-separated
    # list; `tunas-jax serve-costs`, the `service` extra); '' = the executor above.
    config.cost_service = ""
    # Fraction of the dataset held out for the reported metrics (never trained on).
    config.heldout_fraction = 0.1
    # Target 'host_cpu' only (measured, not simulated: tunas_jax/host_dataset.py): untimed
    # runs after each architecture's compile, then timed runs whose median is its latency.
    config.measure_warmup = 5
    config.measure_repeats = 20
    # Which statistic of the timed runs is the latency: 'median' or 'min' (the fastest
    # run: moves less under other processes' load). Both are kept in the dataset, so
    # changing it retrains without measuring again.
    config.measure_statistic = "median"

    # Model: 'linear' (TuNAS's additive cost model, the baseline), 'mlp' (additive x
    # exp(MLP)) or 'cache_aware' (additive costs switched by a learned weight-cache model).
    config.model = "cache_aware"
    # Hidden widths of the MLP (the first is the embedding-sum layer); 'mlp' only.
    config.hidden_sizes = (128, 128)
    # Weight of the cache-aware model's auxiliary loss (learned weight bytes vs the
    # architecture's parameter count, in units of the target's cache size).
    config.weight_loss_scale = 1.0
    # Add TuNAS's per-block Kronecker features (in filters x out filters x op choices).
    config.kronecker_features = True

    # Optimization: AdamW on the squared error of the log-latency (a relative error).
    config.num_steps = 10_000
    config.batch_size = 512
    # Peak learning rate of the warmup + cosine schedule.
    config.learning_rate = 2e-3
    # Fraction of the steps spent warming the learning rate up from 0.
    config.warmup_fraction = 0.02
    # Decoupled weight decay (keeps rarely seen Kronecker slots near zero).
    config.weight_decay = 1e-5
    # Seed of the split, the initialization and the batches.
    config.seed = 0
    return config


def multi_trial_defaults() -> ml_collections.ConfigDict:
    """Every field of a `tunas-jax multi-trial` config (a study of trained candidates)."""
    config = ml_collections.ConfigDict()
    # Search space (search_spaces.get_space name): every decision a categorical parameter.
    config.space = "micro"
    # A topology declared here instead of a space module (search_spaces/declared.py):
    # {'name', 'image_size', 'num_classes', 'stem', 'stages', 'head'}, a list for each
    # searchable parameter. Empty = `space` names a registered space; set = `space` must
    # be the declaration's name.
    config.topology = ml_collections.ConfigDict()
    # Hardware targets; several combine as `multi_hardware_metric` says.
    config.targets = ("pixel6_edgetpu",)
    # Strategy (controllers.get_strategy name): 'random' or 'evolution' (regularized
    # evolution, Real et al. 2019), proposing and observing on the host, or 'vizier' (an
    # OSS Vizier study, `pip install 'tunas-jax[vizier]'`, set up by config.vizier).
    config.strategy = "evolution"
    config.vizier = ml_collections.ConfigDict()
    # controllers.vizier_strategy.ALGORITHMS: Vizier's RANDOM_SEARCH, QUASI_RANDOM_SEARCH,
    # GRID_SEARCH, NSGA2 (Pareto fronts), EAGLE_STRATEGY, or our REGULARIZED_EVOLUTION
    # designer (population_size and tournament_size below).
    config.vizier.algorithm = "REGULARIZED_EVOLUTION"
    # Modules the started server imports first, each registering designers of its own
    # (controllers.vizier_designers.register_designer); their names become algorithms.
    config.vizier.designer_modules = ()
    # What Vizier optimizes: ('reward',), or several for NSGA2, e.g. ('quality', 'latency_ms').
    config.vizier.objectives = ("reward",)
    # '' = start a Vizier server in a child process for the study (stopped with it);
    # 'HOST:PORT' = use a running one (its own datastore; database_url is then unused).
    config.vizier.server = ""
    # The started server's SQL datastore (any SQLAlchemy URL); '' = sqlite:///W/vizier.db.
    config.vizier.database_url = ""
    # The Vizier study's id (owner 'tunas-jax'); '' = one derived from the workdir's path.
    config.vizier.study_id = ""
    # Regularized evolution: population (the most recent completed trials) and tournament.
    config.population_size = 10
    config.tournament_size = 3
    # Budget: trials to complete (failed ones count), and a wall-time limit (0 = none).
    config.num_trials = 20
    config.max_wall_seconds = 0.0
    # Trials trained at once, each in its own worker process (1 = in this process).
    config.workers = 1
    # Where trials run: 'local' (worker processes of this machine) or 'ray' (one Ray task
    # per trial, `pip install 'tunas-jax[ray]'`, cost_models/ray_executor.py), on the
    # cluster at ray_address ('' = start a local one with `workers` CPUs for the study;
    # 'auto' = the running cluster). Every worker must see this checkout and the dataset.
    config.executor = "local"
    config.ray_address = ""
    # Seed of the strategy (the proxy trainer has its own, proxy.seed).
    config.seed = 0
    # Objective the strategy maximizes: 'reward' = quality + reward_beta * |T/T0 - 1|
    # (TuNAS's abs reward on the trained candidate's quality and simulated latency T).
    # Every trial's quality and latency are kept, and pareto.json holds the
    # non-dominated trials (max quality, min latency) whatever the objective.
    config.target_latency_ms = 0.0176
    config.reward_beta = -0.1
    # Latency band: > 0 = every strategy trains only candidates whose latency
    # ratio T/T0 (simulated by the cost interface before any training, as the trial will
    # report it) is within 1 +/- latency_band; 0 = no band. A uniform `micro` sample is
    # within 5% of the default target about 1 time in 100, so without a band a study of
    # a few dozen trials rarely trains one there (EXPERIMENTS.md section 8).
    config.latency_band = 0.0
    # Several targets (a multi-hardware study): one target latency per target, in the order
    # of `targets` (`target_latency_ms` is then unused), and how the ratios T_i / T0_i
    # combine into the reward's one ratio: 'average', 'geomean' or 'worst' (as the search).
    config.target_latencies_ms = ()
    config.multi_hardware_metric = "average"
    # 'end_to_end' or 'layers' (cost_models/latency_metric.py), as in the search configs.
    config.latency_metric = "layers"
    # The proxy trainer: a `tunas-jax train` recipe run per candidate, scored on
    # proxy.dataset.eval_split (held out of its train_split: never the test split).
    config.proxy = train_defaults()
    config.proxy.dataset.train_split = "train[:90%]"
    config.proxy.dataset.eval_split = "train[90%:]"
    return config


def segmentation_defaults() -> ml_collections.ConfigDict:
    """`config.segmentation`: `tasks.Segmentation`'s settings with its defaults (its
    docstring says what each does), so the task's constructor stays their one source."""
    signature = inspect.signature(Segmentation.__init__)
    return ml_collections.ConfigDict({
        name: p.default for name, p in signature.parameters.items()
        if p.default is not inspect.Parameter.empty})


def cost_model_overrides() -> ml_collections.ConfigDict:
    """The search's `cost_model.overrides` section: each cost-model field, typed, set to None.

    A typed placeholder per field (not a free-form mapping) lets
    `--config.cost_model.overrides.num_steps=500` be parsed and checked like any other
    field; None means "keep the value of the cost-model config file".
    """
    defaults = cost_model_defaults()
    return ml_collections.ConfigDict(
        {name: config_dict.placeholder(defaults.get_type(name)) for name in defaults})


def set_overrides(section: ml_collections.ConfigDict) -> dict[str, object]:
    """The fields of a `cost_model.overrides` section that are set (not None)."""
    return {name: value for name, value in section.items() if value is not None}
