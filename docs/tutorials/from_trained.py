"""Start from a model you already trained: load its weights file, compress it, fine-tune briefly."""

import torch

import smhsearch
from smhsearch.data import load_dataset
from smhsearch.train import TrainConfig, evaluate, train

torch.manual_seed(0)
data = load_dataset("fashion-mnist-small")

# A model trained elsewhere, saved as a plain state dict (safetensors files load the same way).
mine = smhsearch.create_model("mlp", hidden=(300, 100))
train(mine, data, TrainConfig(epochs=2, optimizer="adamw", lr=1e-3, weight_decay=0.0), progress=False)
torch.save(mine.state_dict(), "mlp-trained.pt")

# The same architecture from the file: weights checked key by key, the file's sha256 recorded.
trained = smhsearch.create_model("mlp", hidden=(300, 100), weights="mlp-trained.pt")
print("trained model: test accuracy", evaluate(trained, data.test)[0])

for config in (smhsearch.Prune(budget="25%"), smhsearch.LowRank(budget="25%"), smhsearch.SMH(budget="25%")):
    model = smhsearch.compress(trained, config)  # init="fit": the closest start to the trained weights
    facts = model.describe()
    print(config.method, "before fine-tuning:", evaluate(model, data.test)[0], "fit error:", facts.get("fit_error"))
    train(model, data, TrainConfig(epochs=1, optimizer="adamw", lr=1e-3, weight_decay=0.0), progress=False)
    print(config.method, "after one epoch:", evaluate(model, data.test)[0])

# A file made for another head: a 100-class model's weights on a 10-class set.
torch.save(smhsearch.create_model("mlp", hidden=(300, 100), num_classes=100).state_dict(), "mlp-100.pt")
ten = smhsearch.create_model("mlp", hidden=(300, 100), num_classes=10, weights="mlp-100.pt", head="reinit")
print("re-initialised:", smhsearch.models.weights_of(ten).reinitialised)
