"""Shared defaults of the learned latency regressor configs (variants import and override).

Run (a variant, not this file):
    tunas-jax train-cost-model --config experiments/cost_models/mobilenet_edgetpu_v2_pixel6.py \
        --workdir /tmp/cost_model_v2_pixel6
Override any field with `--config.<field>=<value>`, e.g. `--config.model=linear`.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Search space (search_spaces.get_space name) and hardware target (cost_models.hardware).
    config.space = "micro"
    config.target = "pixel6_edgetpu"
    # Input resolution and classes to cost the networks at; None = the space's defaults.
    config.image_size = config_dict.placeholder(int)
    config.num_classes = config_dict.placeholder(int)

    # Dataset: simulated when the file is missing; None = <workdir>/dataset.npz.
    config.dataset_path = config_dict.placeholder(str)
    # Architectures to simulate (the space's presets first, then uniform samples).
    config.num_architectures = 50_000
    # Seed of the architecture sampling (the dataset is a function of it).
    config.dataset_seed = 0
    # Simulation processes; 0 = all cores.
    config.workers = 0
    # Fraction of the dataset held out for the reported metrics (never trained on).
    config.heldout_fraction = 0.1

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
