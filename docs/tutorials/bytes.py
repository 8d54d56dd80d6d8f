"""Size in bytes: the same SMH model stored at 32, 8 and 4 bits."""

import torch

import smhsearch
from smhsearch.measure import stored_bytes

torch.manual_seed(0)
base = smhsearch.create_model("resnet8", num_classes=10, in_channels=1)
x = torch.randn(8, 1, 28, 28)
for bits, quant in ((32, None), (8, "ptq"), (4, "qat")):
    model = smhsearch.compress(base, smhsearch.SMH(budget="25%", bits=bits, quant=quant))
    print(f"{bits:>2} bits ({quant or 'float'}): {stored_bytes(model):,} bytes in the compact file")
