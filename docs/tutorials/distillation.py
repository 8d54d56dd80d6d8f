"""Distil a compressed model from a teacher: here, the trained dense model itself."""

import torch

import smhsearch
from smhsearch.data import load_dataset
from smhsearch.distill import DistillConfig
from smhsearch.train import TrainConfig, train

torch.manual_seed(0)
data = load_dataset("fashion-mnist-small")
teacher = smhsearch.create_model("mlp", hidden=(300, 100))
train(teacher, data, TrainConfig(epochs=1, optimizer="adamw", lr=1e-3, weight_decay=0.0), progress=False)

student = smhsearch.compress(teacher, smhsearch.SMH(budget="10%"))
cfg = TrainConfig(epochs=1, optimizer="adamw", lr=1e-3, weight_decay=0.0, distill=DistillConfig(temperature=4, alpha=0.9))
result = train(student, data, cfg, teacher=teacher, progress=False)
print(f"distilled student: test accuracy {result.test_acc:.3f}")
