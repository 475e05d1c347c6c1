"""`host_cpu` as a search target: a regressor trained on measured latencies."""

from __future__ import annotations

import numpy as np
import pytest

from cost_models import dataset as dataset_lib
from cost_models.interface import RegressorCostModel, Workload
from cost_models.regressor import load_cost_model
from search_spaces import SpecError, get_space
from tasks import Classification
from tunas_jax import config_files, cost_model_training, host_dataset, search, search_targets
from tunas_jax.errors import UsageError

SETTINGS = {"num_architectures": 3, "image_size": 16, "measure_warmup": 1,
            "measure_repeats": 2, "num_steps": 30, "heldout_fraction": 0.34}


def test_measured_dataset_resumes_trains_and_the_search_loads_it(tmp_path, monkeypatch):
    space = get_space("micro")
    cm_dir = tmp_path / "cm"
    path = str(cm_dir / cost_model_training.DATASET_FILE)
    # Measuring stops after the first architecture (as a kill would); one was saved.
    monkeypatch.setattr(host_dataset, "SAVE_EVERY", 1)
    real, calls = host_dataset.measure_latency, []

    def stop_at_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(host_dataset, "measure_latency", stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        host_dataset.measure_dataset(space, 3, path, image_size=16, num_classes=10,
                                     warmup=1, repeats=2, log=lambda _: None)
    first_ms = np.load(host_dataset.partial_path(path))["median_ms"].tolist()
    assert len(first_ms) == 1
    with pytest.raises(SpecError, match="repeats=2, this run has 3"):
        host_dataset.measure_dataset(space, 3, path, image_size=16, num_classes=10,
                                     warmup=1, repeats=3)
    # The cost-model config resumes it (two more measured), then trains on it.
    calls.clear()
    monkeypatch.setattr(host_dataset, "measure_latency", lambda *a, **k: (calls.append(1),
                                                                         real(*a, **k))[1])
    config = config_files.load_config("experiments/cost_models/micro_host_cpu.py", SETTINGS)
    metadata = cost_model_training.train_cost_model(config, cm_dir, log=lambda _: None)
    assert len(calls) == 2
    data = dataset_lib.read_dataset(path, space, "host_cpu")
    assert data.latency_ms[0] == first_ms[0] and np.all(data.latency_ms > 0)
    assert np.isnan(data.energy_mj).all() and (data.params > 0).all()
    assert len(data.metadata["measured"]["relative_iqr"]) == 3
    assert metadata["target"] == "host_cpu" and metadata["heldout"]["num"] == 1
    assert metadata["target_config"]["kind"] == "measured"
    assert metadata["measured"]["repeats"] == 2
    # The fastest repeat instead of the median: the same file, nothing measured again.
    fastest = config_files.load_config("experiments/cost_models/micro_host_cpu.py",
                                       {**SETTINGS, "measure_statistic": "min"})
    min_meta = cost_model_training.train_cost_model(fastest, cm_dir, log=lambda _: None)
    assert len(calls) == 2 and min_meta["measured"]["statistic"] == "min"
    minimum = np.asarray(data.metadata["measured"]["min_ms"])
    assert np.all(minimum <= data.latency_ms) and np.all(minimum > 0)

    # The host_cpu search finds it and loads it as its reward's regressor.
    search_config = search.load_search_config(
        "experiments/search/host_cpu_micro_digits.py", {"cost_model.workdir": str(cm_dir)})
    search.validate_config(search_config)
    paths = search.ensure_cost_models(search_config, str(tmp_path / "w"), log=lambda _: None)
    assert paths == {"host_cpu": str(cm_dir)}
    predictor = load_cost_model(paths["host_cpu"], space, "host_cpu")
    predicted = np.asarray(predictor(data.indices))
    assert predicted.shape == (3,) and np.all(predicted > 0)
    assert predictor.metric_offset_ms("end_to_end") == 0.0
    # The search's outputs cost its argmax through the regressors, host_cpu's included.
    by_regressor = RegressorCostModel({"host_cpu": predictor}).cost(data.indices, ["host_cpu"])
    np.testing.assert_allclose(by_regressor["host_cpu"].latency_ms, predicted, rtol=1e-6)
    # The outputs measure host_cpu (with the dataset's settings) beside a simulated target.
    costs = search_targets.reference_costs(
        space, Workload(16, Classification(10)), data.indices[:1],
        ("host_cpu", "pixel6_edgetpu"), {"host_cpu": predictor})
    assert costs["host_cpu"].latency_ms[0] > 0 and costs["host_cpu"].params[0] > 0
    assert costs["pixel6_edgetpu"].energy_mj is not None
    with pytest.raises(UsageError, match=r"config\.measure_statistic: 'mean'"):
        cost_model_training.train_cost_model(
            config_files.load_config("experiments/cost_models/micro_host_cpu.py",
                                     {**SETTINGS, "measure_statistic": "mean"}),
            cm_dir, log=lambda _: None)


def test_host_cpu_needs_end_to_end_and_a_model_without_a_weight_cache(tmp_path):
    with pytest.raises(UsageError, match=r"config\.latency_metric: 'layers' with target host_cpu"):
        search.load_search_config("experiments/search/host_cpu_micro_digits.py",
                                  {"latency_metric": "layers"})
    cm = config_files.load_config("experiments/cost_models/micro_host_cpu.py",
                                  {"model": "cache_aware"})
    with pytest.raises(UsageError, match=r"config\.model: 'cache_aware'"):
        cost_model_training.train_cost_model(cm, tmp_path, log=lambda _: None)
    # host_dataset times classifiers: a segmentation search on host_cpu is refused up front.
    cm = config_files.load_config("experiments/cost_models/micro_host_cpu.py",
                                  {"task": '{"name": "segmentation", "num_classes": 11}'})
    with pytest.raises(UsageError, match=r"config\.task: host_cpu measures classification"):
        cost_model_training.train_cost_model(cm, tmp_path / "seg", log=lambda _: None)
    assert not (tmp_path / "seg" / "dataset.npz").exists()
