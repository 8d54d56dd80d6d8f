"""Learning rates follow the parametrisation: at the dense model's learning rate, one SGD or
AdamW step moves every compressed model's computed weights as far as it moves the dense
model's (``smhsearch/methods/_rates.py``), and weight decay shrinks them alike."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import smhsearch
from smhsearch import SMH, HashedNets, LowRank, Prune
from smhsearch.data import load_dataset
from smhsearch.methods import METHODS, OPTIMIZERS, VariableRate, param_groups

from .test_contract import make

CASES = {
    "smh": SMH(budget=0.1),
    "smh-learnable": SMH(budget=0.1, scale="learnable"),
    "hashed1": HashedNets(budget=1 / 16),
    "hashed10": HashedNets(budget=1 / 16, hashes=10),
    "hashed1-one-pool": HashedNets.table1(1 / 16),
    "hashed2-one-pool": HashedNets.table1(1 / 16, hashes=2),
    "lowrank": LowRank(budget=0.25),
    "prune": Prune(budget=0.25),
}
LR = {"sgd": 1e-3, "adamw": 1e-4}  # small: one step stays in the linear regime


@pytest.fixture(scope="module")
def batch():
    data = load_dataset("fashion-mnist-small")
    return next(data.train.batches(128, shuffle=True, generator=torch.Generator().manual_seed(0)))


def base_model(arch: str):
    torch.manual_seed(0)
    if arch == "mlp":
        return smhsearch.create_model("mlp", hidden=[64])  # 784-64-10: layers of init std 0.021 and 0.072
    return smhsearch.create_model("resnet8", in_channels=1, widths=(8, 16, 16))


def one_step(model, x, y, optimizer: str, lr: float, weight_decay: float = 0.0, loss_scale: float = 1.0,
             variable_lr_mult: float = 1.0) -> tuple[dict, dict]:
    """The computed weights before and after one optimizer step (SGD as the trainer runs it)."""
    groups = param_groups(model, lr, weight_decay, optimizer, variable_lr_mult)
    opt = (torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True) if optimizer == "sgd"
           else torch.optim.AdamW(groups, lr=lr))
    weights = lambda: {k: v.detach().clone() for k, v in smhsearch.materialize(model).named_parameters()}  # noqa: E731
    before = weights()
    opt.zero_grad()
    (loss_scale * F.cross_entropy(model(x), y)).backward()
    opt.step()
    return before, weights()


def layer_ratios(m, dense_step, step) -> dict[str, float]:
    """Per layer (module) of the compressed weights, ||dW|| / ||dW_dense||, count-weighted over its tensors."""
    (b0, a0), (b1, a1) = dense_step, step
    acc: dict[str, list[float]] = {}
    for t in m.targets:
        r = float((a1[t.name] - b1[t.name]).norm() / (a0[t.name] - b0[t.name]).norm())
        slot = acc.setdefault(t.slots[0][0], [0.0, 0.0])
        slot[0] += t.numel * r
        slot[1] += t.numel
    return {k: s / n for k, (s, n) in acc.items()}


def step_ratio(name: str, arch: str, optimizer: str, batch, variable_lr_mult: float = 1.0) -> float:
    """The rule's promise, measured: the mean over layers of the compressed step against the dense step."""
    x, y = batch
    m = smhsearch.compress(base_model(arch), CASES[name])
    dense = smhsearch.materialize(m)  # the same weights, so the same gradient
    ratios = layer_ratios(m, one_step(dense, x, y, optimizer, LR[optimizer]),
                          one_step(m, x, y, optimizer, LR[optimizer], variable_lr_mult=variable_lr_mult))
    return sum(ratios.values()) / len(ratios)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("arch", ["mlp", "resnet8"])
@pytest.mark.parametrize("name", list(CASES))
def test_one_step_moves_weights_as_dense(name, arch, optimizer, batch):
    r = step_ratio(name, arch, optimizer, batch)
    if name == "lowrank" and optimizer == "sgd":
        # a gradient the factors have not learned (this first step's) moves W by 1 / sqrt of the two SGD
        # bounds' ratio (the next test), about (r / (rows + cols))^(1/4): measured 0.33-0.36
        assert 0.15 < r < 0.8, r
        return
    assert 0.5 < r < 2.0, r  # measured 0.85-1.61


def aligned_and_unrelated_gains(m, u: torch.Tensor, v: torch.Tensor) -> tuple[float, float]:
    """One SGD step on the first computed weight, seen as a matrix, for dL/dW = u v^T (along the
    factors' top singular directions) and for a random unit gradient (unrelated to them): how far
    W moves against the dense step, which moves W by lr."""
    t, lr = m.targets[0], 1e-3
    gains = []
    for G in (torch.outer(u, v), torch.randn(len(u), len(v))):
        G = G / G.norm()
        opt = torch.optim.SGD(param_groups(m, lr, 0.0, "sgd"), lr=lr)
        before = m.dense_weights()[0].detach().clone()
        opt.zero_grad()
        (m.dense_weights()[0] * G.view(t.shape)).sum().backward()
        opt.step()
        gains.append(float((m.dense_weights()[0].detach() - before).norm()) / lr)
    return gains[0], gains[1]


@pytest.mark.parametrize("budget", [0.25, 0.05])
def test_lowrank_sgd_rate_is_the_geometric_middle_of_its_bounds(budget):
    """Low-rank under SGD: a gradient along the factors' top singular directions (where the gain of B A is
    its operator norm) and a gradient unrelated to them (the first step's gain) are moved by the same factor,
    one faster and one slower than the dense step: the rate is the geometric middle of the two bounds, so it
    is off by at most sqrt(bound ratio) wherever training's real alignment lies (module docstring). The
    operator-norm rule it replaced moved the unrelated gradient 5-10x too slowly (the product below ~0.2);
    the first-step rule the aligned one 6-24x too fast (the product ~9)."""
    torch.manual_seed(0)
    m = smhsearch.compress(smhsearch.create_model("mlp", hidden=[256]), LowRank(budget=budget))
    u = torch.linalg.svd(m.B[0].detach())[0][:, 0]
    v = torch.linalg.svd(m.A[0].detach())[2][0]
    aligned, unrelated = gains = aligned_and_unrelated_gains(m, u, v)
    assert aligned > 1.5 and unrelated < 1 / 1.5, gains  # neither bound is the rule
    assert 0.75 < aligned * unrelated < 1.33, gains  # the Gaussian formulas against the factors' real norms


def test_smh_sgd_rate_is_the_first_steps_gain():
    """SMH under SGD keeps the first step's gain (``_smh.py``: the geometric middle, tried, trained it 3-5x too
    slowly): a gradient on C = U V unrelated to U and V moves the weights as the dense step does, and one along
    their top singular directions by the bounds' ratio e_op / e_1 faster, which ``sgd_bounds`` predicts. One
    64 x 64 layer, so C is exactly the weight matrix over its scale. Under the middle both moved by
    sqrt(e_op / e_1) off the dense step (unrelated ~0.3x, aligned ~3x)."""
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64, bias=False))
    m = smhsearch.compress(base, SMH(budget=0.13))
    assert (m.shape.n, m.shape.N) == (64, 64 * 64) and m.shape.M >= 2
    (first, op), = m.sgd_bounds()
    u = torch.linalg.svd(m.U.detach())[0][:, 0]
    v = torch.linalg.svd(m.V.detach())[2][0]
    aligned, unrelated = gains = aligned_and_unrelated_gains(m, u, v)
    assert 0.8 < unrelated < 1.25, gains  # the rule: the first step moves W as the dense step does
    assert 0.75 < aligned / (op / first) < 1.33, (gains, op / first)  # the Gaussian bound against U and V's real norms


def gain_model(gain: float | None = None):
    torch.manual_seed(0)
    m = smhsearch.compress(base_model("resnet8"), SMH(budget=0.1, scale="learnable"))
    if gain is not None:
        with torch.no_grad():
            m.scale_gain.fill_(gain)
    return m


def linear_loss(m, grads: list[torch.Tensor]) -> torch.Tensor:
    """sum_l <G_l, W_l>: its gradient on every W_l is the given G_l."""
    return sum((w * g).sum() for w, g in zip(m.dense_weights(), grads))


def test_learnable_gain_moves_its_layer_along_itself_as_the_dense_step_does():
    """An SGD step on the gain moves W_l by the dense step's own component along W_l, in every layer,
    whatever ||W_l|| (the classifier's bias: 0.06; a convolution's: 30-130). Trained plainly, the gain
    moved W_l ||W_l||^2 times as far, and SMH diverged at the dense model's best rate."""
    m, lr = gain_model(1.3), 0.1
    grads = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(m.targets)]
    (g_gain,) = torch.autograd.grad(linear_loss(m, grads), m.scale_gain)
    with torch.no_grad():
        for l, (w, G) in enumerate(zip(m.dense_weights(), grads)):
            base = w / m.scale_gain[l]  # s_l C_l: dW_l / dg_l
            moved = (lr * g_gain[l] * base).norm()  # the gain's SGD step, in weight space
            dense = lr * (G * w).sum().abs() / w.norm()  # the dense step's component along W_l
            assert float(moved) == pytest.approx(float(dense), rel=1e-4), m.targets[l].name


@pytest.mark.parametrize(("gain", "expected"), [(2.0, 1.0), (4.0, 1.0), (0.5, 0.25)])
def test_a_gain_above_one_leaves_the_factors_step_as_the_rule_sets_it(gain, expected):
    """U and V's SGD step moves each W_l by as much at gain g >= 1 as at gain 1 (plainly trained: g^2
    times as much, the classifier's gain grew to 2.8 and SMH diverged); below 1, g^2 as much."""
    lr = 1e-4  # first order: the step's U dV dU V term is lr^2

    def uv_step(m) -> list[torch.Tensor]:
        grads = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(m.targets)]
        gu, gv = torch.autograd.grad(linear_loss(m, grads), [m.U, m.V])
        with torch.no_grad():
            before = m.dense_weights()
            m.U -= lr * gu
            m.V -= lr * gv
            return [a - b for a, b in zip(m.dense_weights(), before)]

    ref, got = uv_step(gain_model(1.0)), uv_step(gain_model(gain))
    for t, a, b in zip(gain_model().targets, got, ref):
        assert float(a.norm() / b.norm()) == pytest.approx(expected, rel=1e-2), t.name


def test_width_under_adamw_keeps_each_layers_relative_step():
    """A narrower layer starts wider (smaller fan-in): under Adam, which moves every entry by about lr, its
    rate rises by its init std over the base layer's, so one step changes it by as large a fraction as
    the dense layer; the input layer keeps the dense rate. Under SGD the rates are the dense model's."""
    torch.manual_seed(0)
    base = smhsearch.create_model("mlp", hidden=[512])
    m = smhsearch.compress(base, smhsearch.WidthMultiplier(alpha=0.125))
    assert m.variable_rates("sgd") == {}
    rates = m.variable_rates("adamw")
    assert "model.net.1.weight" not in rates  # the input layer's init does not change: the dense rate
    assert rates["model.net.3.weight"].lr_mult == pytest.approx(8**0.5, rel=0.05), rates
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    relative = {}
    for name, model, key in (("dense", base, "net.3.weight"), ("narrow", m, "model.net.3.weight")):
        opt = torch.optim.AdamW(param_groups(model, 1e-3, 0.0, "adamw"), lr=1e-3)
        w = dict(model.named_parameters())[key]
        before = w.detach().clone()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        relative[name] = float((w.detach() - before).norm() / before.norm())
    assert relative["narrow"] == pytest.approx(relative["dense"], rel=0.15), relative


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", ["smh", "smh-learnable", "hashed1-one-pool", "hashed2-one-pool"])
def test_the_dense_rate_unchanged_is_far_off(name, optimizer, batch):
    """The same measurement with the method's multiplier undone: a plain optimizer at one rate for
    everything, as before this rule, moves these methods' weights 10-300x too slowly."""
    m = smhsearch.compress(base_model("mlp"), CASES[name])
    undo = 1.0 / next(iter(m.variable_rates(optimizer).values())).lr_mult
    assert step_ratio(name, "mlp", optimizer, batch, variable_lr_mult=undo) < 0.2


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", ["smh", "hashed1", "hashed1-one-pool", "lowrank"])
def test_weight_decay_shrinks_weights_as_dense(name, optimizer, batch):
    """A step with zero gradient is decay alone: each computed weight matrix shrinks as the dense one does
    (biases are not decayed in a dense model; hashed ones share the decayed variables)."""
    x, y = batch
    lr, wd = 0.1, 0.01
    m = smhsearch.compress(base_model("mlp"), CASES[name])
    dense = smhsearch.materialize(m)
    shrink = lambda b, a, k: 1 - float(a[k].norm() / b[k].norm())  # noqa: E731
    d_before, d_after = one_step(dense, x, y, optimizer, lr, weight_decay=wd, loss_scale=0.0)
    before, after = one_step(m, x, y, optimizer, lr, weight_decay=wd, loss_scale=0.0)
    for t in m.targets:
        if len(t.shape) >= 2:
            assert shrink(d_before, d_after, t.name) > 0.5 * lr * wd
            assert shrink(before, after, t.name) == pytest.approx(shrink(d_before, d_after, t.name), rel=0.03), t.name


def test_groups_apply_the_rates_and_the_override():
    m = smhsearch.compress(base_model("resnet8"), SMH(budget=0.1, scale="learnable"))
    rate = m.variable_rates("adamw")["U"]
    assert rate.degree == 2 and rate.lr_mult > 1  # U V of unit std, scaled by s_l < 1: they must move faster
    groups = {g["name"]: g for g in m.param_groups(lr=1e-3, weight_decay=1e-2, optimizer="adamw", variable_lr_mult=3.0)}
    assert set(groups) == {"no_decay", "variables:U,V"}
    v = groups["variables:U,V"]
    assert v["lr"] == pytest.approx(1e-3 * rate.lr_mult * 3.0) and v["lr_mult"] == pytest.approx(rate.lr_mult * 3.0)
    assert v["weight_decay"] == pytest.approx(1e-2 / (2 * rate.lr_mult))
    assert groups["no_decay"]["lr"] == 1e-3 and groups["no_decay"]["weight_decay"] == 0.0
    assert any(p is m.scale_gain for p in groups["no_decay"]["params"])  # a gain: no decay; its rate rule is in its backward


def test_plain_pytorch_trains_with_the_groups(batch):
    """What a Python API user writes: the groups go straight into a torch optimizer, and 50 AdamW steps
    fit a batch much better than the same optimizer over ``model.parameters()`` at one rate."""
    x, y = batch

    def fit(groups_of) -> float:
        m = smhsearch.compress(base_model("mlp"), SMH(budget=0.1))
        opt = torch.optim.AdamW(groups_of(m), lr=1e-3, weight_decay=1e-2)
        for _ in range(50):
            opt.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
        return loss.item()

    fair = fit(lambda m: m.param_groups(lr=1e-3, weight_decay=1e-2, optimizer="adamw"))
    uniform = fit(lambda m: m.parameters())
    assert fair < 0.5 * uniform  # measured 0.45 against 1.89 (the dense MLP: 0.08; the start: 2.3)


def test_a_dense_model_gets_dense_groups():
    base = base_model("mlp")
    groups = param_groups(base, lr=0.1, weight_decay=5e-4)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [("decay", 0.1, 5e-4), ("no_decay", 0.1, 0.0)]


@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_method_states_its_rates(method, optimizer):
    """Contract: the rates name trainable parameters, cover the method's variables, and the groups
    hold every trainable parameter exactly once."""
    _, m, _ = make(method, "mlp")
    rates = m.variable_rates(optimizer)
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert set(rates) <= names and set(m.variable_names()) <= set(rates)
    assert all(isinstance(r, VariableRate) for r in rates.values())
    grouped = [id(p) for g in m.param_groups(0.1, 1e-4, optimizer) for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"optimizer": "adam"}, "optimizer must be one of 'sgd', 'adamw', but got 'adam'"),
     ({"variable_lr_mult": 0.0}, r"variable_lr_mult must be a finite number > 0, but got 0.0"),
     ({"lr": float("nan")}, "lr must be a finite number > 0"),
     ({"weight_decay": -1.0}, "weight_decay must be a number >= 0, but got -1.0")],
)
def test_bad_input(kwargs, match):
    m = smhsearch.compress(base_model("mlp"), SMH(budget=0.1))
    with pytest.raises(ValueError, match=match):
        m.param_groups(**{"lr": 0.1, **kwargs})
    with pytest.raises(ValueError, match="lr_mult must be a finite number > 0"):
        VariableRate(-1.0)
