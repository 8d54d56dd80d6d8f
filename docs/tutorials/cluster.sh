# A search on a Ray cluster: here a one-machine cluster on this host's loopback address; on a real cluster,
# `ray start --head` runs on the head node, `ray start --address=HEAD_IP:PORT` on every other node, and the
# driver below runs on the head node (`--address auto` joins the cluster this machine is part of).
set -euo pipefail
PORT=${PORT:-6390}
ray start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus=2 --include-dashboard=false --disable-usage-stats
trap 'ray stop --force >/dev/null 2>&1' EXIT   # leave no Ray behind (this stops every Ray on this machine)
smhsearch check tiny.yaml --address auto   # resources checked against the cluster (auto: the one started on this machine)
smhsearch run tiny.yaml --out runs/tiny --address auto
smhsearch pick runs/tiny --max-params 100K
