"""The shipped hardware targets, one module each; `TARGETS` maps name -> target.

Edge TPUs (`HardwareTarget`, kind `edgetpu`) and mobile CPUs, GPUs and DSPs
(`ProcessorTarget`, kinds `cpu`/`gpu`/`dsp`); `tunas-jax targets` lists them.
"""

from cost_models.hardware import LatencyModel
from cost_models.targets.coral_edgetpu import CORAL_EDGETPU
from cost_models.targets.pixel1_cpu import PIXEL1_CPU
from cost_models.targets.pixel3_cpu_4t import PIXEL3_CPU_4T
from cost_models.targets.pixel3_gpu import PIXEL3_GPU
from cost_models.targets.pixel4_dsp import PIXEL4_DSP
from cost_models.targets.pixel6_edgetpu import PIXEL6_EDGETPU

TARGETS: dict[str, LatencyModel] = {t.name: t for t in (
    CORAL_EDGETPU, PIXEL6_EDGETPU, PIXEL1_CPU, PIXEL3_CPU_4T, PIXEL3_GPU, PIXEL4_DSP)}

__all__ = ["CORAL_EDGETPU", "PIXEL1_CPU", "PIXEL3_CPU_4T", "PIXEL3_GPU", "PIXEL4_DSP",
           "PIXEL6_EDGETPU", "TARGETS"]
