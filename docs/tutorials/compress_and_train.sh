# The same from the command line: sizes first, then one job that trains and saves.
set -euo pipefail
smhsearch compress resnet8 --method smh --budget 25% --scale learnable --in-channels 1 --num-classes 10
smhsearch train resnet8 --dataset fashion-mnist-small --method smh --budget 25% --scale learnable \
    --epochs 1 --lr 0.05 --out trained-smh25
ls trained-smh25    # result.json (the record) and model.safetensors (the compact file)
