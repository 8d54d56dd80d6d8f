"""Compress a ResNet-8 with SMH to a quarter of its parameters, train it, ship it."""

import torch

import smhsearch
from smhsearch.data import load_dataset
from smhsearch.train import TrainConfig, train

torch.manual_seed(0)
data = load_dataset("fashion-mnist-small")  # embedded: 7,200 / 800 / 2,000 images, 28 x 28
base = smhsearch.create_model("resnet8", num_classes=data.num_classes, in_channels=1)

model = smhsearch.compress(base, smhsearch.SMH(budget="25%", scale="learnable"))
print(model.describe())  # n, M, the layers it hashes
print("stored parameters:", smhsearch.measure.stored_parameters(model), "of", sum(p.numel() for p in base.parameters()))

# one epoch here; a real run trains for as many as the dense model would
result = train(model, data, TrainConfig(epochs=1, lr=0.05), progress=False)
print(f"validation accuracy {result.history[-1].val_acc:.3f}, test accuracy {result.test_acc:.3f}")

smhsearch.save_compact(model, "resnet8-smh25.safetensors")  # U, V, the scales, the unhashed parameters
again = smhsearch.load_compact("resnet8-smh25.safetensors")  # rebuilt from the file alone
x = torch.randn(4, 1, 28, 28)
assert torch.allclose(again(x), model.eval()(x), atol=1e-5)
dense = smhsearch.materialize(model)  # a plain ResNet-8: inference costs what the base costs
assert torch.allclose(dense.eval()(x), model(x), atol=1e-5)
