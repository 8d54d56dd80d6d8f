# Search a space, read its report, pick under a budget, export the pick.
set -euo pipefail
smhsearch check tiny.yaml                          # validates the space and pre-screens its 3 candidates
smhsearch run tiny.yaml --out runs/tiny            # Ray Tune + Optuna; run it again and it resumes
smhsearch report runs/tiny --out tiny.html         # the interactive Pareto report, one HTML file
smhsearch pick runs/tiny --max-params 100K --json > pick.json  # the best finished trial under 100K stored parameters
trial=$(python -c "import json; print(json.load(open('pick.json'))['chosen']['number'])")
smhsearch export runs/tiny --trial "$trial" --out shipped --format safetensors,compact
ls shipped
