"""Shared defaults of the standalone training configs (variants import and override).

Run (a variant, not this file):
    tunas-jax train --config experiments/train/micro_digits.py \
        --config.architecture=ARCH.json --workdir /tmp/train_micro
Override any field with `--config.<field>=<value>` (nested: `--config.dataset.name=cifar10`).

`architecture` is what to train: an architecture JSON file (`search_spaces.load`,
e.g. the `architecture.json` a search writes) or `preset:<name>` for a named
network of `search_spaces.PRESETS` (e.g. `preset:mobilenet_edgetpu_v2_s`). It
may stay empty when `init_from` names a search workdir: the search's
architecture is used.
"""

import ml_collections

from tunas_jax.data import default_dataset_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # What to train: an architecture JSON path or 'preset:<name>' (see the module docstring).
    # No default: a training run of "some" network is never what was meant.
    config.architecture = ""
    # A search workdir whose supernet weights initialize the model (weight inheritance);
    # '' = train from scratch. Needs an architecture of the search's space.
    config.init_from = ""
    # Task (tasks.get_task name): the head, loss and evaluation metrics.
    config.task = "classification"

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

    # Cost report in result.json: the simulated hardware target, and a trained latency
    # regressor workdir (`tunas-jax train-cost-model`) for predicted_latency_ms ('' = none).
    config.target = "pixel6_edgetpu"
    config.cost_model_workdir = ""
    # Latency reported as simulated_latency_ms / predicted_latency_ms: 'end_to_end' or
    # 'layers' (without the fixed per-inference part; cost_models/latency_metric.py).
    # Use the metric of the search whose architectures you compare.
    config.latency_metric = "end_to_end"
    return config
