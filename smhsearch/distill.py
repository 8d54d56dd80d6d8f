"""Knowledge distillation: the config and the loss (Hinton et al. 2015).

The student trains on

    (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

with the teacher in eval mode and no gradient. The T^2 keeps the soft term's gradient on
the scale of the hard term's as T changes (Hinton et al., section 2). ``alpha = 0`` is
plain cross-entropy. The usual recipe (RepDistiller's) is T = 4, alpha = 0.9.

The teacher is ``dense`` (the uncompressed architecture, trained once per architecture,
dataset and training settings and shared: :mod:`smhsearch.teachers`) or the path of a
saved model file (``model.safetensors`` as ``smhsearch train --out`` or a trial writes it).

>>> import torch
>>> s, t, y = torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1])
>>> round(float(kd_loss(s, t, y, DistillConfig(alpha=0.0))), 4) == round(float(torch.log(torch.tensor(3.0))), 4)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ConfigError

DENSE_TEACHER = "dense"


@dataclass(frozen=True)
class DistillConfig:
    """Distil from a teacher. Every field is checked; the message states the rule and the value."""

    teacher: str = field(
        default=DENSE_TEACHER,
        metadata={
            "help": "dense (the uncompressed architecture, trained once with the same settings and shared) "
            "or the path of a saved model file"
        },
    )
    temperature: float = field(default=4.0, metadata={"help": "softmax temperature T of both models' logits"})
    alpha: float = field(default=0.9, metadata={"help": "weight of the soft (KL * T^2) term; 1 - alpha weighs cross-entropy"})
    teacher_epochs: int | None = field(default=None, metadata={
        "help": "teacher dense: train it this many epochs (default: the students' own); a teacher must be better than its "
                "students, and short trials leave the dense model undertrained"})

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, str) or not self.teacher:
            raise ConfigError("teacher", "teacher must be 'dense' or the path of a saved model file", self.teacher)
        if self.teacher != DENSE_TEACHER and not Path(self.teacher).expanduser().is_file():
            raise ConfigError("teacher", "teacher must be 'dense' or the path of a saved model file", self.teacher,
                              got=f"no model file at {self.teacher!r} (smhsearch train --out writes model.safetensors)")
        if (
            isinstance(self.temperature, bool)
            or not isinstance(self.temperature, (int, float))
            or not 0 < self.temperature < math.inf
        ):
            raise ConfigError("temperature", "0 < temperature < inf must hold", self.temperature)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise ConfigError("alpha", "0 <= alpha <= 1 must hold", self.alpha)
        if self.teacher_epochs is not None:
            if isinstance(self.teacher_epochs, bool) or not isinstance(self.teacher_epochs, int) or self.teacher_epochs < 1:
                raise ConfigError("teacher_epochs", "teacher_epochs must be an int >= 1 or null", self.teacher_epochs)
            if self.teacher != DENSE_TEACHER:
                raise ConfigError("teacher_epochs", "teacher_epochs applies to teacher 'dense' (trained by the run) only, "
                                  "not to a model file", self.teacher_epochs, teacher=self.teacher)

    @property
    def trains_teacher(self) -> bool:
        """Whether the teacher is trained by the run (``dense``), not read from a file."""
        return self.teacher == DENSE_TEACHER

    @classmethod
    def coerce(cls, value: Any) -> "DistillConfig | None":
        """None, a DistillConfig, or its fields as a mapping (as a record or a space gives them); a ConfigError names the
        field as the holder (a training config) has it: ``distill``, ``distill.alpha``."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise ConfigError("distill", f"distill takes the keys {', '.join(cls.__dataclass_fields__)}", value,
                                  got=f"unknown key(s) {unknown}")
            try:
                return cls(**value)
            except ConfigError as e:
                raise e.within("distill") from None
        raise ConfigError("distill", "distill must be null or a mapping {teacher, temperature, alpha}", value)


def kd_loss(student, teacher, targets, cfg: DistillConfig, label_smoothing: float = 0.0):
    """The distillation loss of a batch: ``(1 - alpha) * CE + alpha * T^2 * KL(teacher/T || student/T)``, batch-mean.

    ``student`` and ``teacher`` are logits (B, K); ``targets`` class indices (B,). The KL is
    summed over classes and averaged over the batch (``reduction="batchmean"``, the
    mathematically correct mean of KL). ``label_smoothing`` applies to the CE term only.
    """
    import torch.nn.functional as F

    t = float(cfg.temperature)
    ce = F.cross_entropy(student, targets, label_smoothing=label_smoothing)
    if cfg.alpha == 0:
        return ce
    kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher.detach() / t, dim=1), reduction="batchmean",
                  log_target=True)  # (,): sum over classes, mean over the batch
    return (1 - cfg.alpha) * ce + cfg.alpha * (t * t) * kl
