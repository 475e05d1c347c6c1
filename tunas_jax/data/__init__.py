"""Input data for search, training and evaluation: TFDS data sources read with grain.

No TensorFlow anywhere: datasets are ArrayRecord files read by
`tfds.data_source`; preprocessing is numpy inside grain worker threads. The
default dataset, scikit-learn's digits, is built into a TFDS data_dir on first
use (offline). See `pipeline.py` for the batch format and the checkpointable
iterator state.
"""

from tunas_jax.data.digits import TunasDigits, default_data_dir, prepare_digits
from tunas_jax.data.pipeline import (
    EvalDataset,
    Preprocess,
    SearchData,
    create_eval_data,
    create_search_data,
    make_eval_iterator,
    make_iterator,
    make_preprocess,
)
from tunas_jax.data.sources import (
    check_held_out,
    default_dataset_config,
    load_source,
    make_search_splits,
    num_classes,
)

__all__ = [
    "EvalDataset",
    "Preprocess",
    "SearchData",
    "TunasDigits",
    "check_held_out",
    "create_eval_data",
    "create_search_data",
    "default_data_dir",
    "default_dataset_config",
    "load_source",
    "make_eval_iterator",
    "make_iterator",
    "make_preprocess",
    "make_search_splits",
    "num_classes",
    "prepare_digits",
]
