"""TuNAS on ImageNet in the MobileNetEdgeTPUv2 space (Pixel 6 Edge TPU latency, 224 px).

TuNAS's ImageNet hyperparameters (Bender et al. 2020; google-research
`tunas/mobile_architecture_search.py`): 90 epochs at batch 4096, RMSProp
(decay 0.9, momentum 0.9, eps 1.0), peak LR 0.165 * batch/256 cosine with
2.5% warmup, label smoothing 0.1, weight decay 4e-5; validation batches 4x
larger held out of the training split. Needs imagenet2012 in ArrayRecord
format.

Run:
    tunas-jax search --config experiments/search/imagenet_mobilenet_edgetpu_v2.py \
        --workdir /tmp/search_v2
"""

import ml_collections

from experiments.search import base

# ImageNet's training split has 1,281,167 images; TuNAS holds out a part for the reward.
IMAGENET_TRAIN_EXAMPLES = 1_281_167


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.space = "mobilenet_edgetpu_v2"
    config.targets = ("pixel6_edgetpu",)
    config.dataset.name = "imagenet2012"
    config.dataset.image_size = 224
    # TuNAS: reward batches held out of the training split (~5% here).
    config.dataset.train_split = "train[:95%]"
    config.dataset.valid_split = "train[95%:]"
    config.dataset.eval_split = "validation"
    config.dataset.in_memory = False
    config.cost_model.config = "experiments/cost_models/mobilenet_edgetpu_v2_pixel6.py"
    # Median of this space's simulated latencies (0.92-6.3 ms, 500 uniform samples).
    config.target_latency_ms = 2.3
    config.reward = "abs"
    config.reward_beta = -0.10

    config.batch_size = 4096
    config.valid_batch_size = 4 * 4096
    # TuNAS samples 32 architectures per step (one per core of a v2-32), each trained on
    # 128 images: on one device, 32 per device. On N devices use 32 / N to keep both.
    config.architectures_per_device = 32
    # 90 epochs of the 95% training split.
    config.steps = 90 * int(0.95 * IMAGENET_TRAIN_EXAMPLES) // config.batch_size
    config.optimizer.name = "rmsprop"
    config.optimizer.base_learning_rate = 0.165
    config.optimizer.warmup_fraction = 0.025
    config.optimizer.decay = 0.9
    config.optimizer.momentum = 0.9
    config.optimizer.epsilon = 1.0
    config.optimizer.weight_decay = 4e-5
    config.optimizer.label_smoothing = 0.1
    # TuNAS controller defaults (base.py): LR 3e-4 * batch/256 rising 10x after a
    # 25% delay; op and filter warmup over the first 25%.
    # Every layer of more than one configuration runs masked, as TuNAS: this space
    # asks for 6,165 exact layer configurations (kxk layers of 229-313), which do not
    # compile in reasonable time; masked, 253 branches (compile times measured in
    # BENCHMARKS.md). A step then costs the widest choices, not the child's.
    config.max_branches_per_layer = 1
    config.log_every = 100
    config.checkpoint_every = 1000
    return config
