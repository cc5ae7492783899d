"""Meta-Neural Cellular Automata (Barot, late-breaking abstract): a local rule grows weights.

Every weight w of a feed-forward task network T is a cell with a hidden vector h (H channels)
and a fixed positional code c (its input neuron, output neuron and layer; see
localrules.core.weightgraph). One rule network R, shared by all weights of all layers of all
architectures, updates them:

    p          = [w, h, w_f, h_f, w_b, h_b]         (see localrules.core.weightgraph)
    dw, dh     = R(p, c)                            MLP: W_1 p + U c -> hidden -> 1+H, last layer zero-init
    [w, h]    += [u <= fire_rate] * [dw, dh]
    h          = clamp(h, -hidden_clip, hidden_clip)   the rule's post hook (Config.hidden_clip > 0; rules from stage 4 on)

R is not conditioned on data. Meta-training samples task networks (random weights N(0, 1/fan_in)
and hidden states N(0, h_init_std^2)), applies R for a random number of steps, and
backpropagates the task loss of T (cross-entropy on a data batch) into R through the unrolled
updates. Sample pooling keeps grown networks across iterations; zero-out perturbs some of them.

Two choices decide whether meta-training leaves chance on pixel inputs (8x8 digits, MNIST):
the positional code must be octave Fourier features (``fourier``; a base-10^4 transformer code
left even a direct hypernetwork from code to weights at chance), and the task networks' hidden
units are tanh by default: with ReLU the rule's first move was to kill every hidden unit
(loss ln 10, zero gradients), a saddle it never left. The code is an input of R, not part of
h: R cannot overwrite it, and U c is computed once per step for all sampled networks, which
makes a training step about 3x cheaper than carrying the 60 code channels in every h.

Task networks are MLPs (``archs`` entries of layer sizes) or small CNNs (``conv:8,16``,
``conv:8,res,16``: localrules.core.convgraph), whose kernel weights are cells with the same
perception; channels carry the relative code, so one rule reads any channel count.

Unbounded, h drifts: under the stage-3 rule |h| keeps growing, past anything seen in
meta-training (4-8-update rollouts from a pool), and its grown networks collapse after about
100 updates; the clamp keeps h where the rule was trained and the networks at their accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from localrules.core import NCA, Rule
from localrules.core.data_signals import ACTIVATIONS, SIGNALS, DataConditioned, forward_layers
from localrules.core.convgraph import ConvNet, image_shape, is_conv_arch, parse_conv_arch
from localrules.core.nca import ClampHidden
from localrules.core.neuron_code import (LAYER_CODES, NeuronCode, neuron_positions, random_positions, relative_positions,
                                         wrapped_positions)
from localrules.core.weightgraph import DenseLayers, WeightGraph
from localrules.data.tabular import Split
from localrules.progress import bar as progress_bar
from localrules.train.checkpoint import build_from_checkpoint
from localrules.train.perturb import zero_out
from localrules.train.pool import SamplePool
from localrules.train.pooled import PooledTask

HIDDEN_CODES = ("index", "random", "relative", "wrap")
ARCH_DRAWS = ("uniform", "log")  # how --arch-range draws hidden widths
PRETRAINED_PATH = Path(str(resources.files("localrules") / "pretrained" / "metanca-mnist.safetensors"))


@dataclass
class Config:
    dataset: str = "iris"
    archs: tuple[tuple[int, ...], ...] = ((4, 16, 3),)  # layer sizes, or conv:C1,C2,... strings (CNNs; see convgraph)
    pos_dim: int = 20  # positional-code width per index (input neuron, output neuron, layer): 2^10 positions
    hidden: int = 8  # channels of the hidden state h of each weight
    rule_hidden: tuple[int, ...] = (64, 64)
    fire_rate: float = 0.5
    activation: str = "tanh"  # relu: meta-training fell into dead hidden units (chance) on digits and MNIST
    h_init_std: float = 1.0
    samples: int = 16  # task networks per iteration
    pool_size: int = 128  # per architecture; 0 turns sample pooling off
    fresh_frac: float = 0.25  # of each batch replaced by new random networks
    zero_out_frac: float = 0.3  # weights zeroed besides the whole layer
    zero_out_prob: float = 0.0  # share of each batch hit by zero-out
    data_batch: int = 512
    split_seed: int = 0
    engine: str = "dense"  # dense (fast, chain MLPs) | graph (PyG, any DAG)
    data_conditioned: bool = False  # perception also holds neuron activations and errors
    hidden_code: str = "index"  # index | random (a random position per network) | relative (i * span / width) | wrap (i mod span)
    hidden_span: float = 0.0  # random: positions drawn from [0, hidden_span) (0 = the whole code range); relative, wrap: required
    arch_range: tuple[int, ...] = ()  # (lo, hi): meta-train on hidden widths drawn from lo..hi
    arch_pools: int = 4  # with arch_range and pooling: pools of random architectures kept at once
    arch_redraw: float = 0.05  # with arch_range and pooling: chance per iteration to redraw the drawn pool
    arch_draw: str = "uniform"  # with arch_range: hidden widths uniform in lo..hi, or log (log-uniform)
    hidden_clip: float = 0.0  # |h| <= hidden_clip after every update (0: unbounded, as rules before stage 4)
    layer_code: str = "index"  # index (layer l by its index) | role (input / hidden / output) | relative (2 l / (L - 2))

    @property
    def channels(self) -> int:
        return 1 + self.hidden

    def validate(self) -> "Config":
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, not {self.activation!r}")
        if self.engine not in ("dense", "graph"):
            raise ValueError(f"engine must be 'dense' or 'graph', not {self.engine!r}")
        if self.pos_dim < 0 or self.hidden < 0:
            raise ValueError("pos_dim and hidden must be >= 0")
        if not self.archs:
            raise ValueError("need at least one meta-training architecture")
        convs = [a for a in self.archs if is_conv_arch(a)]
        for a in convs:
            parse_conv_arch(a)
        if convs and self.data_conditioned:
            raise ValueError("the data-conditioned rule grows dense layers only; drop the conv architectures or --data-conditioned")
        if convs and (self.arch_range or self.hidden_code == "random"):
            raise ValueError("conv architectures take neither arch_range nor the random hidden code "
                             "(their channels always carry the relative code)")
        if self.pool_size and self.pool_size < self.samples:
            raise ValueError("pool_size must be 0 (no pooling) or >= samples")
        if self.hidden_code not in HIDDEN_CODES:
            raise ValueError(f"hidden_code must be one of {HIDDEN_CODES}, not {self.hidden_code!r}")
        if self.arch_range and (len(self.arch_range) != 2 or not 1 <= self.arch_range[0] <= self.arch_range[1]):
            raise ValueError(f"arch_range must be (lo, hi) with 1 <= lo <= hi, not {self.arch_range}")
        if self.hidden_span < 0:
            raise ValueError("hidden_span must be >= 0")
        if self.hidden_code in ("relative", "wrap") and not self.hidden_span:
            raise ValueError(f"hidden_code {self.hidden_code!r} needs hidden_span > 0: the hidden positions fill [0, span)")
        if self.hidden_clip < 0:
            raise ValueError("hidden_clip must be >= 0 (0: unbounded hidden states)")
        if self.layer_code not in LAYER_CODES:
            raise ValueError(f"layer_code must be one of {LAYER_CODES}, not {self.layer_code!r}")
        if self.arch_draw not in ARCH_DRAWS:
            raise ValueError(f"arch_draw must be one of {ARCH_DRAWS}, not {self.arch_draw!r}")
        if self.arch_pools < 1 or not 0 <= self.arch_redraw <= 1:
            raise ValueError("arch_pools must be >= 1 and arch_redraw in [0, 1]")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        d = dict(d)
        d["archs"] = tuple(a if is_conv_arch(a) else tuple(a) for a in d["archs"])
        d["rule_hidden"] = tuple(d["rule_hidden"])
        d["arch_range"] = tuple(d.get("arch_range", ()))  # checkpoints before issue 17 lack the new keys
        return cls(**d).validate()


def build_rule(cfg: Config) -> NCA:
    """The local rule as an NCA with a parameter-free (weight-graph) perception."""
    n_in = 3 * cfg.channels + (SIGNALS if cfg.data_conditioned else 0)
    rule = Rule(n_in, cfg.rule_hidden, cfg.channels, relu_input=False, code_dim=3 * cfg.pos_dim)
    return set_hidden_clip(NCA(None, rule, cfg.fire_rate, sparse_fire=True), cfg.hidden_clip)


def set_hidden_clip(rule: NCA, clip: float) -> NCA:
    """Bound the rule's hidden channels to [-clip, clip] after every update (its ``post`` hook;
    0: unbounded), e.g. to measure a rule with another bound than the one it was trained with."""
    rule.post = ClampHidden(clip) if clip else None
    return rule


def hidden_clip(rule: NCA) -> float:
    """The bound of the rule's hidden channels (0.0: unbounded)."""
    return rule.post.limit if isinstance(rule.post, ClampHidden) else 0.0


def with_data_inputs(rule: NCA, cfg: Config) -> NCA:
    """A data-conditioned copy of a plain rule that makes the same updates: its first layer reads
    the four neuron signals with zero weights, W' = [W, 0] of shape (hidden0, 3C + 4), so
    meta-training the variant starts where the plain rule is."""
    out = build_rule(replace(cfg, data_conditioned=True))
    state = rule.state_dict()
    w = state["rule.mlp.0.weight"]
    state["rule.mlp.0.weight"] = torch.cat([w, w.new_zeros(w.shape[0], SIGNALS)], 1)
    out.load_state_dict(state)
    return out


def topology(sizes, engine: str = "dense"):
    return DenseLayers(sizes) if engine == "dense" else WeightGraph(sizes)


def conv_span(cfg: Config) -> float:
    """The range [0, span) the channels of a conv network are spread over (the relative code): the rule's
    hidden_span, else 100, the hidden indices 0..99 an index-coded rule saw."""
    return cfg.hidden_span or 100.0


def task_topology(arch, cfg: Config, n_features: int, n_classes: int):
    """The weight graph of ``arch``: layer sizes (an MLP: :func:`topology`) or a conv:C1,C2,... string
    (a CNN on square grey images of ``n_features`` pixels, :class:`localrules.core.convgraph.ConvNet`)."""
    if is_conv_arch(arch):
        return ConvNet(arch, image_shape(n_features), n_classes, conv_span(cfg))
    return topology(arch, cfg.engine)


def arch_key(arch) -> str:
    """A printable key of an architecture: "784,50,30,10" or "conv:8,16"."""
    return arch if is_conv_arch(arch) else ",".join(map(str, arch))


def arch_label(arch) -> str | list[int]:
    """An architecture as JSON and the studies print it: [784, 50, 30, 10], or "conv:8,16" for a CNN."""
    return arch if is_conv_arch(arch) else list(arch)


def init_networks(topo, samples: int, cfg: Config, device=None) -> torch.Tensor:
    """(S, cells, 1 + H): weights N(0, 1/fan_in), hidden states N(0, h_init_std^2)."""
    mats = topo.split(torch.empty(samples, topo.n_cells, 1))
    fan_in = getattr(topo, "fan_in", None) or [topo.sizes[b.src] for b in topo.blocks]
    w = torch.cat([torch.randn(m.shape[:3]).flatten(1) / f**0.5 for m, f in zip(mats, fan_in)], 1)
    h = torch.randn(samples, topo.n_cells, cfg.hidden) * cfg.h_init_std
    return torch.cat([w[..., None], h], -1).to(device)


def task_forward(topo, state: torch.Tensor, x: torch.Tensor, activation: str) -> torch.Tensor:
    """Run the S task networks whose weights are ``state[..., 0]`` on x (D, n_0) -> (S, D, n_L)."""
    if isinstance(topo, ConvNet):
        return topo.forward(state, x, activation)
    return forward_layers(topo, state, x, activation)[0][len(topo.sizes) - 1]


def conditioned(topo, cfg: "Config", x: torch.Tensor, y: torch.Tensor):
    """The topology the rule runs on: data-conditioned when ``cfg.data_conditioned``."""
    return DataConditioned(topo, x, y, cfg.activation) if cfg.data_conditioned else topo


def coded(topo, cfg: "Config", positions: torch.Tensor | None):
    """The topology the rule runs on for S networks: with ``cfg.hidden_code == "random"`` their
    own neuron positions (S, nodes), with "relative" the positions i * span / width shared by all,
    with "wrap" i mod span (see localrules.core.neuron_code), else the shared index code; the layer part by
    ``cfg.layer_code`` (index, role or relative: :func:`localrules.core.neuron_code.layer_positions`).
    A conv network carries its own (relative, role) code."""
    if isinstance(topo, ConvNet):
        return topo
    if cfg.hidden_code == "relative":
        return NeuronCode(topo, relative_positions(topo, cfg.hidden_span)[None], cfg.layer_code)
    if cfg.hidden_code == "wrap":
        return NeuronCode(topo, wrapped_positions(topo, cfg.hidden_span)[None], cfg.layer_code)
    if cfg.hidden_code == "random":
        return NeuronCode(topo, positions, cfg.layer_code)
    return topo if cfg.layer_code == "index" else NeuronCode(topo, neuron_positions(topo)[None], cfg.layer_code)


def code_overrides(cfg: Config, layer_code: str | None = None, wrap: float = 0.0) -> dict:
    """The config fields that grow a rule with another code (studies, `load_rule(wrap=)`): {} or layer_code,
    hidden_code 'wrap' and hidden_span.
    The wrapped code reads an index-coded rule's own codes on layers up to ``wrap`` wide."""
    out = {"layer_code": layer_code} if layer_code else {}
    if wrap:
        if cfg.hidden_code not in ("index", "wrap"):
            raise ValueError(f"the wrapped code reads index-coded rules; this rule's hidden code is {cfg.hidden_code!r}")
        out |= {"hidden_code": "wrap", "hidden_span": float(wrap)}
    return out


def new_positions(topo, samples: int, cfg: "Config", device=None) -> torch.Tensor | None:
    """(samples, nodes) random hidden-neuron positions for new networks; None for the index code."""
    if cfg.hidden_code != "random":
        return None
    return random_positions(topo, samples, cfg.pos_dim, cfg.hidden_span).to(device)


def random_arch(cfg: "Config") -> tuple[int, ...]:
    """A meta-training architecture drawn as the depth, inputs and outputs of one of ``cfg.archs``
    with every hidden width drawn from ``cfg.arch_range`` (lo..hi): uniform, or with
    ``arch_draw="log"`` log-uniform, width = floor(exp(u)), u ~ U[ln lo, ln(hi + 1)), so each
    factor of widths (5..10, 50..100) is drawn equally often."""
    lo, hi = cfg.arch_range
    t = cfg.archs[int(torch.randint(len(cfg.archs), (1,)))]
    n = len(t) - 2
    if cfg.arch_draw == "log":
        u = math.log(lo) + (math.log(hi + 1) - math.log(lo)) * torch.rand(n, dtype=torch.float64)
        widths = u.exp().floor().clamp(lo, hi).long()
    else:
        widths = torch.randint(lo, hi + 1, (n,))
    return (t[0], *(int(v) for v in widths), t[-1])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(S, D, K), (D,) -> (S,) fraction correct per task network."""
    return (logits.argmax(-1) == y).float().mean(-1)


def zero_out_networks(topo, state: torch.Tensor, frac: float, generator=None) -> torch.Tensor:
    """Per network: zero the weights of one random whole layer and ``frac`` of the other weights."""
    out = state.clone()
    for s in range(len(state)):
        mats = topo.split(state[s : s + 1, :, :1])
        zeroed, _ = zero_out([m for m in mats], frac, generator)
        out[s, :, 0] = torch.cat([z.flatten() for z in zeroed])
    return out


@torch.no_grad()
def grow(rule: NCA, topo, state: torch.Tensor, steps: int, x=None, y=None, activation="relu",
         every: int = 1, metric=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Apply the rule ``steps`` times (``rule.rollout``); with data, also record
    ``metric(logits, y)`` after every ``every`` updates and the last (default: the (S,) accuracies)."""
    metric = metric or accuracy
    curve = []
    bar = progress_bar(total=steps, desc="grow", unit="update", leave=False)

    def observe(t: int, state: torch.Tensor) -> None:
        bar.update()
        if x is not None and (t % every == 0 or t == steps):
            curve.append(metric(task_forward(topo, state, x, activation), y))

    state = rule.rollout(topo, None, state, None, steps, observe=observe)
    bar.close()
    return state, curve


class MetaNCATask(PooledTask):
    """Meta-training of the rule (implements the trainer's Task protocol).

    Architectures: ``cfg.archs`` with one sample pool each; or, with ``cfg.arch_range``, hidden
    widths drawn from that range: a fresh architecture every iteration without pooling, else
    ``cfg.arch_pools`` pools of random architectures, the drawn one replaced by a new random
    architecture with probability ``cfg.arch_redraw`` per iteration. With the random hidden code
    a pool also keeps each network's neuron positions (slot "pos")."""

    NAME = "metanca"
    BATCH = ("samples", "--samples")

    def __init__(self, cfg: Config, data: Split, device: torch.device):
        self.cfg = cfg.validate()
        self.device = device
        self.data = data
        for a in cfg.archs:
            if is_conv_arch(a):
                image_shape(data.n_features)
            elif a[0] != data.n_features or a[-1] != data.n_classes:
                raise ValueError(f"architecture {list(a)} does not fit {cfg.dataset}: it needs "
                                 f"{data.n_features} inputs and {data.n_classes} outputs")
        self.model = build_rule(cfg).to(device)
        self.x = data.x_train.to(device)
        self.y = data.y_train.to(device)
        self.topos, self.pools = {}, {}
        if not cfg.arch_range:
            for a in cfg.archs:
                self._add(a)
        elif cfg.pool_size:
            while len(self.pools) < cfg.arch_pools:
                self._add(random_arch(cfg))

    def _topology(self, arch):
        topo = task_topology(arch, self.cfg, self.data.n_features, self.data.n_classes)
        return conditioned(topo, self.cfg, self.x, self.y)

    def _add(self, arch) -> None:
        """A topology and (with pooling) a pool of new networks for ``arch``."""
        topo = self.topos[arch] = self._topology(arch)
        if self.cfg.pool_size:
            slots = {"state": init_networks(topo, self.cfg.pool_size, self.cfg, self.device)}
            pos = new_positions(topo, self.cfg.pool_size, self.cfg, self.device)
            if pos is not None:
                slots["pos"] = pos
            self.pools[arch] = SamplePool(**slots)

    def _draw_arch(self):
        cfg = self.cfg
        if not cfg.arch_range:
            return cfg.archs[int(torch.randint(len(cfg.archs), (1,)))]
        if not cfg.pool_size:
            return random_arch(cfg)
        archs = list(self.pools)
        arch = archs[int(torch.randint(len(archs), (1,)))]
        if float(torch.rand(())) < cfg.arch_redraw:
            new = random_arch(cfg)
            if new not in self.pools:
                del self.pools[arch], self.topos[arch]
                self._add(new)
                arch = new
        return arch

    def training_batch(self):
        """-> (arch, topology, pool indices or None, state (S, cells, C), positions (S, nodes) or None)."""
        cfg = self.cfg
        arch = self._draw_arch()
        topo = self.topos[arch] if arch in self.topos else self._topology(arch)
        if not cfg.pool_size:
            state = init_networks(topo, cfg.samples, cfg, self.device)
            return arch, topo, None, state, new_positions(topo, cfg.samples, cfg, self.device)
        idx, b = self.pools[arch].sample(cfg.samples)
        state, pos = b["state"], b.get("pos")
        n_fresh = int(round(cfg.samples * cfg.fresh_frac))
        if n_fresh:
            state[:n_fresh] = init_networks(topo, n_fresh, cfg, self.device)
            if pos is not None:
                pos[:n_fresh] = new_positions(topo, n_fresh, cfg, self.device)
        n_zero = int(round(cfg.samples * cfg.zero_out_prob))
        if n_zero:
            s = slice(cfg.samples - n_zero, cfg.samples)
            state[s] = zero_out_networks(topo, state[s], cfg.zero_out_frac)
        return arch, topo, idx, state, pos

    def training_loss(self, steps: int):
        arch, topo, idx, state, pos = self.training_batch()
        state = self.model.rollout(coded(topo, self.cfg, pos), None, state, None, steps)
        d = torch.randint(len(self.x), (min(self.cfg.data_batch, len(self.x)),), device=self.device)
        logits = task_forward(topo, state, self.x[d], self.cfg.activation)
        y = self.y[d]
        loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(state)))
        self._committed = None
        if idx is not None:
            self.commit(self.pools[arch], idx, {"state": state.detach(), **({} if pos is None else {"pos": pos})})
        return loss, {"task_accuracy": accuracy(logits.detach(), y).mean().item()}

    def with_config(self, cfg: Config) -> "MetaNCATask":
        return MetaNCATask(cfg, self.data, self.device)

    def extra_state(self):
        return {"pools": {arch_key(a): p.state_dict() for a, p in self.pools.items()}}

    def load_extra_state(self, state):
        if self.cfg.arch_range:  # the random architectures in use when the checkpoint was written
            self.topos, self.pools = {}, {}
            for key in state["pools"]:
                self._add(tuple(int(v) for v in key.split(",")))
        for a, p in self.pools.items():
            p.load_state_dict(state["pools"][arch_key(a)])


def load(path: str | Path, device="cpu") -> tuple[NCA, Config, dict]:
    model, cfg, meta = build_from_checkpoint(path, "metanca", Config.from_dict, build_rule)
    return model.to(device).eval(), cfg, meta
