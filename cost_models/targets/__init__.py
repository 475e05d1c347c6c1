"""The shipped hardware targets, one module each; `TARGETS` maps name -> target."""

from cost_models.hardware import HardwareTarget
from cost_models.targets.coral_edgetpu import CORAL_EDGETPU
from cost_models.targets.pixel6_edgetpu import PIXEL6_EDGETPU

TARGETS: dict[str, HardwareTarget] = {t.name: t for t in (CORAL_EDGETPU, PIXEL6_EDGETPU)}

__all__ = ["CORAL_EDGETPU", "PIXEL6_EDGETPU", "TARGETS"]
