"""``localrules run metanca`` and the MetaNCA studies (heatmap, zeroout, stability)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import summary
from localrules.viz.labels import adam_label
from .common import (DATA_HELP, DEVICE_HELP, MAX_BAD_HELP, MINUTES_HELP, OVERWRITE_HELP, accelerate, command_line, eval_app,
                     init_weights, resumed_config, run_app, setup, study_app)
from .options import CLI_DEFAULTS, MN, TRAIN, Precision, compile_option, graphs_option, ints, option, precision_option


class Dataset(str, Enum):
    mnist = "mnist"
    iris = "iris"
    digits = "digits"
    wine = "wine"
    breast_cancer = "breast_cancer"


RAY_HELP = ("Run the cells as Ray tasks, one CPU (or GPU) each: auto (the cluster in $RAY_ADDRESS, else a new "
            "local instance) or HOST:PORT; needs pip install 'localrules\\[distributed]'.")


LAYER_CODE_HELP = ("Grow with this layer code instead of the rule's own: index, role (input / hidden / output: "
                   "the same at any depth) or relative; see `run metanca --layer-code`.")
WRAP_HELP = ("Grow an index-coded rule with the wrapped hidden code: hidden neuron i at i mod SPAN, e.g. 100 for a "
             "rule meta-trained on layers up to 100 wide (the index code on layers up to SPAN wide, codes the rule "
             "has seen on wider ones); 0: the rule's own code.")


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",")]  # "4,,3" is refused, not read as 4,3
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise typer.BadParameter(f"{what} must be positive integers, got {text!r}")
    return vals


def _arch(text: str):
    """An --arch value: layer sizes 784,50,30,10 (a tuple) or a CNN conv:8,16 / conv:8,res,16 (the string)."""
    if not text.startswith("conv"):
        return tuple(_ints(text, "--arch"))
    from localrules.core.convgraph import parse_conv_arch

    try:
        parse_conv_arch(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--arch") from None
    return text


def _default_archs(dataset: str) -> list[str]:
    return {"mnist": ["784,10,10,10", "784,30,20,10", "784,50,30,10"],
            "iris": ["4,16,3", "4,8,8,3"], "digits": ["64,30,10", "64,30,20,10"],
            "wine": ["13,16,3", "13,8,8,3"], "breast_cancer": ["30,16,2", "30,8,8,2"]}[dataset]


@run_app.command("metanca")
def run_metanca(
    ctx: typer.Context,
    dataset: Dataset = option(MN, "dataset", to=Dataset, help="Task data: mnist (70k digits, 80/20 split), or scikit-learn's iris, 8x8 digits, wine or breast_cancer."),
    arch: Optional[List[str]] = typer.Option(CLI_DEFAULTS["metanca"]["arch"], help="Meta-training architecture(s), e.g. --arch 784,50,30,10 (repeat the option), or a CNN on the square images of mnist / digits: conv:8,16 = conv3x3 (8 channels) -> act -> 2x2 max-pool, the same with 16, then a dense head to the classes; 'res' adds a residual block x + conv(act(conv(x))) at the current width (conv:8,res,16). Default depends on the dataset."),
    out: Path = typer.Option(Path("runs/metanca"), help="Run folder: checkpoints, metrics.jsonl."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/train_state.pt, to the run's recorded --iterations unless given; a changed --lr applies from the resume iteration on and is recorded."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    init_rule: Optional[Path] = typer.Option(None, help="Start from the weights of this rule checkpoint (.safetensors) with a fresh pool and optimizer, e.g. to continue the shipped rule on a GPU; its architecture options must match (a plain rule may start a --data-conditioned one: it reads the data signals with zero weights at first)."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Skip training: grow networks with the shipped MNIST rule and report their test accuracy (see also `localrules eval metanca`)."),
    iterations: int = typer.Option(CLI_DEFAULTS["metanca"]["iterations"], help="Meta-training iterations."),
    minutes: float = option(TRAIN, "minutes", min=0, help=MINUTES_HELP),
    checkpoint_every: int = option(TRAIN, "checkpoint_every", min=1, help="Write model.safetensors and train_state.pt every this many iterations."),
    lr: float = option(TRAIN, "lr", help="Adam learning rate."),
    max_bad_steps: int = option(TRAIN, "max_bad_steps", help=MAX_BAD_HELP),
    steps_min: int = typer.Option(CLI_DEFAULTS["metanca"]["steps_min"], help="Fewest rule updates per iteration."),
    steps_max: int = typer.Option(CLI_DEFAULTS["metanca"]["steps_max"], help="Most rule updates per iteration."),
    samples: int = option(MN, "samples", help="Task networks grown per iteration."),
    rule_hidden: str = option(MN, "rule_hidden", to=ints, help="Hidden layer widths of the rule MLP, e.g. 32 or 64,64."),
    pos_dim: int = option(MN, "pos_dim", help="Width of each weight's fixed positional code (octave Fourier features) per index (input neuron, output neuron, layer), an input of the rule: 2 * log2 of the positions to tell apart (20: 1,024)."),
    hidden: int = option(MN, "hidden", help="Channels of each weight's hidden state h."),
    activation: str = option(MN, "activation", help="Hidden activation of the task networks: tanh or relu (with relu, meta-training on digits and MNIST fell into dead hidden units and stayed at chance)."),
    pool_size: int = option(MN, "pool_size", help="Sample pool per architecture (0 = no sample pooling)."),
    fresh_frac: float = option(MN, "fresh_frac", help="Share of each pooled batch replaced by fresh random networks."),
    zero_out_prob: float = option(MN, "zero_out_prob", help="Share of each batch hit by zero-out (a whole layer + 30 % of the rest)."),
    engine: str = option(MN, "engine", help="dense (fast, chain MLPs) or graph (torch-geometric, any DAG)."),
    data_conditioned: bool = option(MN, "data_conditioned", "--data-conditioned", help="Beyond the abstract: the rule also reads neuron activations and errors on a data batch (a learned local learning rule)."),
    hidden_code: str = option(MN, "hidden_code", help="Positional code of hidden neurons: index (their index in the layer, as the shipped rule), random (a random position per neuron drawn when a network is initialised), relative (neuron i of a layer of n at i * SPAN / n: the same code for the same place in a layer of any width) or wrap (neuron i at i mod SPAN: the index code on layers up to SPAN wide, codes the rule has seen on wider ones)."),
    hidden_span: float = option(MN, "hidden_span", help="With --hidden-code random: hidden positions drawn from [0, SPAN) (0: the whole code range; 100: the indices the shipped rule saw, to fine-tune it). With --hidden-code relative (required there): the range [0, SPAN) every layer's neurons are spread over. With --hidden-code wrap (required there): the period, the widest layer meta-trained on."),
    hidden_clip: float = option(MN, "hidden_clip", min=0.0, help="Bound every hidden-state channel to [-CLIP, CLIP] after each update (0: unbounded). Unbounded, the stage-3 rule's hidden states keep growing and its grown networks fall apart after about 100 updates; bounded at 2.5 the same weights hold for 500."),
    layer_code: str = option(MN, "layer_code", help="Positional code of a weight's layer: index (the destination layer's index, as the shipped rules: unseen depths read unseen codes), role (from the input / hidden to hidden / into the output: the same at any depth) or relative (2 l / (L - 2), a fraction of the depth); role and relative equal index on two hidden layers."),
    arch_range: Optional[str] = option(MN, "arch_range", to=ints, help="LO,HI: meta-train on hidden widths drawn from LO..HI (as --arch-draw says; depth, inputs and outputs from --arch) instead of the fixed --arch list."),
    arch_draw: str = option(MN, "arch_draw", help="With --arch-range: hidden widths drawn uniform (in LO..HI) or log (log-uniform: 5..10 as often as 50..100, so narrow layers are seen often and wide ones stay affordable)."),
    arch_pools: int = option(MN, "arch_pools", help="With --arch-range and pooling: pools of random architectures kept at once."),
    arch_redraw: float = option(MN, "arch_redraw", help="With --arch-range and pooling: chance per iteration that the drawn pool gets a new random architecture."),
    split_seed: int = option(MN, "split_seed", help="Seed of the 80/20 train/test split (recorded in the checkpoint)."),
    data_batch: int = option(MN, "data_batch", min=1, help="Training examples the grown networks are scored on per iteration (the meta-loss); smaller is cheaper for CNNs on a CPU."),
    seed: int = option(TRAIN, "seed", help="Training seed."),
    grow_steps: int = typer.Option(30, help="With --pretrained: rule updates to grow each network."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    compile: Optional[bool] = compile_option(),
    cuda_graphs: bool = graphs_option(),
    precision: Precision = precision_option(),
):
    """MetaNCA: meta-train a local rule that grows the weights of task networks."""
    import torch

    from localrules.data.tabular import load_split
    from localrules.tasks import metanca as mn
    from localrules.train.loop import TrainConfig, train

    dev = setup(device, threads)
    if pretrained:
        _eval_rule(mn.PRETRAINED_PATH, samples, grow_steps, seed, dev, data_dir)
        return
    archs = tuple(_arch(a) for a in (arch or _default_archs(dataset.value)))
    cfg = mn.Config(dataset=dataset.value, archs=archs, samples=samples, pool_size=pool_size, fresh_frac=fresh_frac,
                    rule_hidden=tuple(_ints(rule_hidden, "--rule-hidden")), pos_dim=pos_dim,
                    hidden=hidden, activation=activation,
                    zero_out_prob=zero_out_prob, engine=engine, split_seed=split_seed,
                    data_conditioned=data_conditioned, hidden_code=hidden_code, hidden_span=hidden_span,
                    arch_range=tuple(_ints(arch_range, "--arch-range")) if arch_range else (),
                    arch_pools=arch_pools, arch_redraw=arch_redraw, arch_draw=arch_draw, hidden_clip=hidden_clip,
                    layer_code=layer_code, data_batch=data_batch).validate()
    data = load_split(cfg.dataset, cfg.split_seed, data_dir)
    torch.manual_seed(seed)
    task = mn.MetaNCATask(cfg, data, dev)
    if init_rule is not None and not resume:
        _init_from(task, init_rule)
    tcfg = TrainConfig(iterations=iterations, lr=lr, lr_milestones=(), steps_min=steps_min,
                       steps_max=steps_max, seed=seed, minutes=minutes,
                       checkpoint_every=checkpoint_every, max_bad_steps=max_bad_steps, precision=precision.value)
    tcfg = resumed_config(ctx, tcfg, out, resume, {"max_bad_steps": ("max_bad_steps",), "precision": ("precision",),
        "iterations": ("iterations",), "lr": ("lr",), "steps_min": ("steps_min",), "steps_max": ("steps_max",),
        "checkpoint_every": ("checkpoint_every",), "seed": ("seed",)})
    accelerate(task.model, dev, compile, cuda_graphs, "metanca", tcfg.iterations)
    typer.echo(f"metanca on {cfg.dataset}: rule with {sum(p.numel() for p in task.model.parameters()):,} "
               f"parameters, architectures {[mn.arch_key(a) for a in archs]}, device={dev}")
    last = train(task, tcfg, out, dev, resume=resume, command=command_line(), overwrite=overwrite)
    if last:
        typer.echo(summary.training(f"a metanca rule on {cfg.dataset}", last, out, "rule"))


def _init_from(task, path: Path) -> None:
    """Load a saved rule's weights into ``task.model``; the rule's shape options must agree, except
    that a plain rule starts a --data-conditioned one (its signal inputs weighted 0)."""
    from dataclasses import replace

    from localrules.tasks import metanca as mn

    def load(p):
        rule, cfg, meta = mn.load(p)
        if task.cfg.data_conditioned and not cfg.data_conditioned:
            rule, cfg = mn.with_data_inputs(rule, cfg), replace(cfg, data_conditioned=True)
        return rule, cfg, meta

    init_weights(task, path, load, ("pos_dim", "hidden", "rule_hidden", "data_conditioned"), "--init-rule", "rule")


def _eval_rule(checkpoint: Path, samples: int, steps: int, seed: int, dev, data_dir, adam_epochs: float = 0.0) -> dict:
    """Grow ``samples`` networks of every meta-training architecture; test accuracy per architecture,
    beside one network of it trained with Adam for ``adam_epochs`` (> 0)."""
    from localrules.data.tabular import load_split
    from localrules.studies.adam_baseline import train_adam
    from localrules.studies.metanca_studies import grow_accuracy
    from localrules.tasks import metanca as mn

    if not Path(checkpoint).with_suffix(".safetensors").is_file():
        raise typer.BadParameter(f"no rule checkpoint at {checkpoint}")
    rule, cfg, _ = mn.load(checkpoint, dev)
    data = load_split(cfg.dataset, cfg.split_seed, data_dir)
    rows = []
    for a in cfg.archs:
        acc = grow_accuracy(rule, cfg, a, data, samples, steps, seed)
        rows.append({"arch": mn.arch_label(a), "mean_accuracy": acc.mean().item(),
                     "std": acc.std().item() if samples > 1 else 0.0})
        line = (f"{rows[-1]['arch']}: test accuracy {rows[-1]['mean_accuracy']:.4f} +- {rows[-1]['std']:.4f} "
                f"over {samples} grown networks")
        if adam_epochs > 0:
            adam = train_adam(a, data, adam_epochs, activation=cfg.activation, seed=seed)["adam_accuracy"]
            rows[-1].update(adam_accuracy=adam, ratio=rows[-1]["mean_accuracy"] / adam)
            line += f"; {adam_label(adam_epochs)} {adam:.4f}, grown / Adam {rows[-1]['ratio']:.4f}"
        typer.echo(line)
    return {"checkpoint": str(checkpoint), "dataset": cfg.dataset, "samples": samples, "steps": steps,
            "seed": seed, "adam_epochs": adam_epochs, "archs": rows}


@eval_app.command("metanca")
def eval_metanca(
    checkpoint: Optional[Path] = typer.Option(None, help="A MetaNCA rule (model.safetensors); default the shipped MNIST rule."),
    samples: int = typer.Option(100, help="Networks grown per meta-training architecture."),
    steps: int = typer.Option(30, help="Rule updates per grown network (30, as every study and the README's figures)."),
    adam_epochs: float = typer.Option(1.0, min=0, help="Gradient-descent baseline: also train each architecture with Adam (batch 128, lr 1e-3, the grown networks' activation and initialisation) for this many epochs of the training split and report grown / Adam (0: skip)."),
    heatmap: Optional[Path] = typer.Option(None, help="A `study heatmap` JSON to summarise in the card."),
    zeroout: Optional[Path] = typer.Option(None, help="A `study zeroout` JSON to summarise in the card."),
    architectures: Optional[Path] = typer.Option(None, help="A `study architectures` JSON (e.g. --arch conv:8,16 ...) to list in the card: the architectures meta-trained on and the ones only evaluated."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the accuracies here."),
    card: Optional[Path] = typer.Option(None, help="Write a Markdown model card here."),
    card_notes: str = typer.Option("", help="Free text appended to the model card."),
    seed: int = typer.Option(0, help="Seed of the initialisations."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
):
    """Grow networks of the rule's meta-training architectures and report their test accuracy."""
    from localrules.tasks import metanca as mn

    ckpt = checkpoint or mn.PRETRAINED_PATH
    res = _eval_rule(ckpt, samples, steps, seed, setup(device, threads), data_dir, adam_epochs)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=1))
    if card:
        from localrules.studies.report import metanca_card

        studies = {k: json.loads(p.read_text()) for k, p in
                   (("heatmap", heatmap), ("zeroout", zeroout), ("architectures", architectures)) if p}
        card.write_text(metanca_card(ckpt, res, studies, card_notes))
        typer.echo(f"model card: {card}")


@study_app.command("heatmap")
def study_heatmap(
    checkpoint: Optional[Path] = typer.Option(None, help="A MetaNCA rule (model.safetensors); default the shipped MNIST rule."),
    x: str = typer.Option("10,20,30,40,50,60,70,80,90,100", help="First hidden layer sizes X."),
    y: str = typer.Option("10,20,30,40,50,60,70,80,90,100", help="Second hidden layer sizes Y."),
    samples: int = typer.Option(100, help="Networks grown per architecture."),
    steps: int = typer.Option(30, help="Rule updates per grown network."),
    json_out: Path = typer.Option(Path("runs/heatmap.json"), "--json", help="Results; an existing file with the same settings is resumed."),
    png: Optional[Path] = typer.Option(None, help="Heatmap figure."),
    workers: int = typer.Option(0, help="CPU worker processes of one thread each (0 or 1: in this process)."),
    adam_epochs: float = typer.Option(1.0, min=0, help="Gradient-descent baseline: also train each architecture with Adam (batch 128, lr 1e-3, the grown networks' activation and initialisation) for this many epochs of the training split and report grown / Adam (0: skip)."),
    seed: int = typer.Option(0, help="Seed of the initialisations."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch in this process (without --workers)."),
    ray: Optional[str] = typer.Option(None, help=RAY_HELP),
    depth: Optional[str] = typer.Option(None, help="Instead of --x / --y: hidden-layer counts, e.g. 1,2,3,4; one cell per depth x --width, every hidden layer that width (needs --width)."),
    width: Optional[str] = typer.Option(None, help="With --depth: hidden-layer widths, e.g. 5,10,30,100."),
    layer_code: Optional[str] = typer.Option(None, help=LAYER_CODE_HELP),
    wrap: float = typer.Option(0.0, min=0, metavar="SPAN", help=WRAP_HELP),
):
    """Architecture generalisation: mean test accuracy of grown [n_in, X, Y, n_out] networks
    (or, with --depth and --width, of [n_in, width x depth, n_out])."""
    from localrules.data.tabular import load_split
    from localrules.studies.metanca_studies import heatmap
    from localrules.tasks import metanca as mn

    checkpoint = checkpoint or mn.PRETRAINED_PATH
    dev = setup(device, threads)
    if workers > 1 and dev.type != "cpu":
        raise typer.BadParameter("worker processes are for the CPU; on a GPU one process grows every cell",
                                 param_hint="--workers")
    if not checkpoint.is_file():
        raise typer.BadParameter(f"no rule checkpoint at {checkpoint}", param_hint="--checkpoint")
    if (depth is None) != (width is None):
        raise typer.BadParameter("--depth and --width go together", param_hint="--depth / --width")
    _check_layer_code(layer_code)
    if layer_code and depth is None:
        raise typer.BadParameter("the X x Y heatmap grows with the rule's own code; use it with --depth / --width",
                                 param_hint="--layer-code")
    _, cfg, _ = mn.load(checkpoint)
    _check_wrap(cfg, wrap)
    data = load_split(cfg.dataset, cfg.split_seed, data_dir)
    if depth is not None:
        from localrules.studies.arch_sweep import depth_width

        res = depth_width(checkpoint, data, _ints(depth, "--depth"), _ints(width, "--width"), samples, steps,
                          json_out, workers=workers, seed=seed, device=dev, adam_epochs=adam_epochs,
                          layer_code=layer_code, wrap=wrap, ray=ray)
        if png:
            from localrules.viz.plots import plot_depth_width

            plot_depth_width(res, png)
        _echo_sweep(res, json_out)
        return
    res = heatmap(checkpoint, data, _ints(x, "--x"), _ints(y, "--y"), samples, steps, json_out, workers, seed,
                  device=dev, adam_epochs=adam_epochs, ray=ray, wrap=wrap)
    if png:
        from localrules.viz.plots import plot_heatmap

        plot_heatmap(res, png)
    files = f"results in {json_out}" + (f", figure in {png}" if png else "")
    typer.echo(f"heatmap of {checkpoint.name} on {cfg.dataset}: [n_in, X, Y, n_out] networks grown "
               f"({samples} per cell, {steps} updates); test accuracy over {len(res['cells'])} cells: "
               f"mean {res['mean_over_cells']:.4f}, worst {res['worst_cell']:.4f}, best {res['best_cell']:.4f}; {files}")
    if "median_ratio" in res:
        typer.echo(f"{adam_label(adam_epochs)}: mean {res['adam_mean_over_cells']:.4f}; grown / Adam: "
                   f"median {res['median_ratio']:.4f}, worst {res['worst_ratio']:.4f}")


def _check_wrap(cfg, wrap: float) -> None:
    from localrules.tasks import metanca as mn

    try:
        mn.code_overrides(cfg, wrap=wrap)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--wrap") from None


def _check_layer_code(code: Optional[str]) -> None:
    from localrules.core.neuron_code import LAYER_CODES

    if code is not None and code not in LAYER_CODES:
        raise typer.BadParameter(f"must be one of {list(LAYER_CODES)}, not {code!r}", param_hint="--layer-code")


def _echo_sweep(res: dict, json_out: Path) -> None:
    """Summary lines of an architecture sweep: overall, Adam, and per depth."""
    typer.echo(f"{len(res['cells'])} architectures: mean {res['mean_over_cells']:.4f}, worst {res['worst_cell']:.4f}, "
               f"best {res['best_cell']:.4f}; {json_out}")
    if "median_ratio" in res:
        typer.echo(f"Adam ({res['adam_epochs']:g} epochs): mean {res['adam_mean_over_cells']:.4f}; grown / Adam: "
                   f"median {res['median_ratio']:.4f}, worst {res['worst_ratio']:.4f}")
    for d, row in res["by_depth"].items():
        adam = f", Adam {row['adam_accuracy']:.4f}, median grown / Adam {row['median_ratio']:.4f}" if "adam_accuracy" in row else ""
        typer.echo(f"  {d} hidden: {row['cells']} cells, mean {row['mean_accuracy']:.4f}{adam}")


def _range(text: str, what: str) -> tuple[int, int]:
    vals = _ints(text, what)
    if len(vals) != 2 or vals[0] > vals[1]:
        raise typer.BadParameter(f"{what} must be LO,HI with LO <= HI, got {text!r}")
    return vals[0], vals[1]


@study_app.command("architectures")
def study_architectures(
    checkpoint: Optional[Path] = typer.Option(None, help="A MetaNCA rule (model.safetensors); default the shipped MNIST rule."),
    random: int = typer.Option(20, "--random", min=1, help="Random architectures to grow."),
    depth_range: str = typer.Option("1,4", help="LO,HI: hidden-layer counts drawn from LO..HI."),
    width_range: str = typer.Option("5,100", help="LO,HI: every hidden width drawn from LO..HI."),
    samples: int = typer.Option(10, help="Networks grown per architecture."),
    steps: int = typer.Option(30, help="Rule updates per grown network."),
    adam_epochs: float = typer.Option(1.0, min=0, help="Gradient-descent baseline: the same architecture trained with Adam for this many epochs (0: skip)."),
    layer_code: Optional[str] = typer.Option(None, help=LAYER_CODE_HELP),
    wrap: float = typer.Option(0.0, min=0, metavar="SPAN", help=WRAP_HELP),
    json_out: Path = typer.Option(Path("runs/architectures.json"), "--json", help="Results; an existing file with the same settings is resumed."),
    png: Optional[Path] = typer.Option(None, help="Figure: grown against Adam per architecture."),
    workers: int = typer.Option(0, help="CPU worker processes of one thread each (0 or 1: in this process)."),
    seed: int = typer.Option(0, help="Seed of the architectures and the initialisations."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch in this process (without --workers)."),
    ray: Optional[str] = typer.Option(None, help=RAY_HELP),
    arch: Optional[List[str]] = typer.Option(None, help="Instead of --random: these architectures (repeat the option), MLP layer sizes or CNNs, e.g. --arch conv:8,16 --arch conv:8,res,16 --arch 784,50,30,10 (see `run metanca --arch`); a bar figure of grown and Adam accuracy per architecture."),
):
    """Random architectures [n_in, h_1..h_k, n_out] (or, with --arch, named MLPs and CNNs): grown test
    accuracy against Adam per architecture."""
    from localrules.data.tabular import load_split
    from localrules.studies.arch_sweep import random_archs, sweep
    from localrules.tasks import metanca as mn

    checkpoint = checkpoint or mn.PRETRAINED_PATH
    if not checkpoint.is_file():
        raise typer.BadParameter(f"no rule checkpoint at {checkpoint}", param_hint="--checkpoint")
    _check_layer_code(layer_code)
    if arch:
        if wrap:
            raise typer.BadParameter("--arch grows with the rule's own code", param_hint="--wrap")
        _study_listed(checkpoint, [_arch(a) for a in arch], samples, steps, adam_epochs, json_out, png, seed,
                      setup(device, threads), data_dir, layer_code, workers, ray)
        return
    archs = random_archs(random, _range(depth_range, "--depth-range"), _range(width_range, "--width-range"), seed)
    dev = setup(device, threads)
    _, cfg, _ = mn.load(checkpoint)
    _check_wrap(cfg, wrap)
    data = load_split(cfg.dataset, cfg.split_seed, data_dir)
    res = sweep(checkpoint, data, archs, samples, steps, json_out, workers=workers, seed=seed, device=dev,
                adam_epochs=adam_epochs, layer_code=layer_code, wrap=wrap, ray=ray,
                extra={"depth_range": list(_range(depth_range, "--depth-range")),
                       "width_range": list(_range(width_range, "--width-range"))})
    if png:
        from localrules.viz.plots import plot_architectures

        plot_architectures(res, png)
    _echo_sweep(res, json_out)


def _study_listed(checkpoint, archs, samples, steps, adam_epochs, json_out, png, seed, dev, data_dir, layer_code,
                  workers, ray) -> None:
    from localrules.data.tabular import load_split
    from localrules.studies.arch_sweep import listed
    from localrules.tasks import metanca as mn

    if layer_code or workers > 1 or ray:
        raise typer.BadParameter("--arch grows with the rule's own code, in this process",
                                 param_hint="--layer-code / --workers / --ray")
    _, cfg, _ = mn.load(checkpoint)
    data = load_split(cfg.dataset, cfg.split_seed, data_dir)
    for a in archs:
        if not isinstance(a, str) and (a[0] != data.n_features or a[-1] != data.n_classes):
            raise typer.BadParameter(f"{cfg.dataset} needs {data.n_features} inputs and {data.n_classes} outputs, "
                                     f"not {list(a)}", param_hint="--arch")
    try:
        res = listed(checkpoint, data, archs, samples, steps, json_out, seed, dev, adam_epochs)
    except ValueError as e:  # e.g. a CNN on data that are not square images
        raise typer.BadParameter(str(e), param_hint="--arch") from None
    if png:
        from localrules.viz.plots import plot_listed

        plot_listed(res, png)
    for c in res["cells"]:
        adam = (f"; {adam_label(adam_epochs)} {c['adam_accuracy']:.4f}, grown / Adam {c['ratio']:.4f}"
                if c.get("ratio") is not None else "")
        seen = "meta-trained on" if c["in_training"] else "only evaluated"
        typer.echo(f"{c['arch']} ({seen}): grown {c['mean_accuracy']:.4f} +- {c['std']:.4f}{adam}")
    typer.echo(f"results in {json_out}" + (f", figure in {png}" if png else ""))


@study_app.command("datasets")
def study_datasets(
    checkpoint: Optional[Path] = typer.Option(None, help="A MetaNCA rule (model.safetensors); default the shipped MNIST rule."),
    datasets: str = typer.Option("digits,wine,breast_cancer,iris", help="Comma-separated scikit-learn datasets: digits, wine, breast_cancer, iris."),
    hidden: str = typer.Option("30,20", help="Hidden widths of every task network; inputs and outputs are each dataset's own."),
    samples: int = typer.Option(10, help="Networks grown per dataset and rule."),
    steps: int = typer.Option(30, help="Rule updates per grown network."),
    finetune_iters: int = typer.Option(500, min=0, help="Meta-fine-tune iterations on each dataset from the rule (0: zero-shot only)."),
    lr: float = typer.Option(1e-3, help="Learning rate of the meta-fine-tune."),
    adam_epochs: str = typer.Option("1,100", help="Comma-separated epoch counts of the Adam baselines (1: as in the heatmap)."),
    out: Path = typer.Option(Path("runs/datasets"), help="Folder: the fine-tuned rules (OUT/DATASET) and datasets.json."),
    png: Optional[Path] = typer.Option(None, help="Figure: accuracy per dataset and method."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
):
    """Beyond MNIST: the rule grows networks for scikit-learn's datasets, against Adam and logistic regression."""
    from localrules.studies.dataset_transfer import SKLEARN_DATASETS, dataset_row
    from localrules.tasks import metanca as mn

    checkpoint = checkpoint or mn.PRETRAINED_PATH
    if not checkpoint.is_file():
        raise typer.BadParameter(f"no rule checkpoint at {checkpoint}", param_hint="--checkpoint")
    names = [d for d in datasets.split(",") if d]
    bad = [d for d in names if d not in SKLEARN_DATASETS]
    if bad or not names:
        raise typer.BadParameter(f"must be among {list(SKLEARN_DATASETS)}, got {datasets!r}", param_hint="--datasets")
    try:
        epochs = [float(e) for e in adam_epochs.split(",")]
    except ValueError:
        raise typer.BadParameter(f"must be comma-separated numbers, got {adam_epochs!r}", param_hint="--adam-epochs") from None
    dev = setup(device, threads)
    rows = []
    for name in names:
        rows.append(dataset_row(checkpoint, name, tuple(_ints(hidden, "--hidden")), samples, steps, finetune_iters,
                                epochs, out, lr, seed, dev))
        r = rows[-1]
        ft = f", fine-tuned {r['finetuned']:.4f}" if "finetuned" in r else ""
        adam = ", ".join(f"Adam {k} ep {v:.4f}" for k, v in r["adam"].items())
        typer.echo(f"{name} {r['arch']}: grown {r['grown']:.4f}{ft}; {adam}; logistic regression "
                   f"{r['logistic_regression']:.4f} (chance {r['chance']:.2f})")
        res = {"checkpoint": str(checkpoint), "samples": samples, "steps": steps, "finetune_iters": finetune_iters,
               "lr": lr, "seed": seed, "rows": rows}
        out.mkdir(parents=True, exist_ok=True)
        (out / "datasets.json").write_text(json.dumps(res, indent=1))
    if png:
        from localrules.viz.plots import plot_datasets

        plot_datasets(res, png)
    typer.echo(f"{out / 'datasets.json'}")


@study_app.command("zeroout")
def study_zeroout(
    checkpoint: Optional[Path] = typer.Option(None, help="A MetaNCA rule (model.safetensors); default the shipped MNIST rule."),
    arch: Optional[str] = typer.Option(None, help="Task architecture, e.g. 784,50,30,10 or a CNN conv:8,16 (default: the first meta-training one)."),
    samples: int = typer.Option(100, help="Networks grown."),
    steps_before: int = typer.Option(30, help="Rule updates before the zero-out."),
    steps_after: int = typer.Option(60, help="Rule updates after it."),
    frac: float = typer.Option(0.3, help="Fraction of the other weights zeroed besides one whole layer."),
    hidden_clip: Optional[float] = typer.Option(None, min=0.0, help="Bound the rule's hidden states to [-CLIP, CLIP] after every update instead of the rule's own bound (0: unbounded), e.g. to measure a rule trained without one."),
    json_out: Path = typer.Option(Path("runs/zeroout.json"), "--json"),
    png: Optional[Path] = typer.Option(None, help="Accuracy-over-updates figure."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    ray: Optional[str] = typer.Option(None, help=RAY_HELP),
):
    """Zero-out robustness: accuracy before and after zeroing a layer and 30 % of the weights."""
    from localrules.data.tabular import load_split
    from localrules.studies.metanca_studies import zeroout_curve
    from localrules.tasks import metanca as mn

    checkpoint = checkpoint or mn.PRETRAINED_PATH
    if ray and hidden_clip is not None:
        raise typer.BadParameter("Ray tasks load the rule as saved; drop --ray to measure it under another bound",
                                 param_hint="--hidden-clip")
    dev = setup(device, threads)
    rule, cfg, _ = mn.load(checkpoint, dev)
    if hidden_clip is not None:
        mn.set_hidden_clip(rule, hidden_clip)
    sizes = _arch(arch) if arch else cfg.archs[0]
    data = load_split(cfg.dataset, cfg.split_seed, data_dir)
    if ray:
        from localrules.studies.metanca_studies import zeroout_cell
        from localrules.studies.ray_cells import run_cells

        job = (str(checkpoint), sizes, data, samples, steps_before, steps_after, frac, seed, str(dev))
        res = next(run_cells(zeroout_cell, [job], ray, gpu=dev.type == "cuda"))
    else:
        res = zeroout_curve(rule, cfg, sizes, data, samples, steps_before, steps_after, frac, seed)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(res, indent=1))
    if png:
        from localrules.viz.plots import plot_zeroout

        plot_zeroout(res, png)
    files = f"results in {json_out}" + (f", figure in {png}" if png else "")
    typer.echo(f"zero-out of {checkpoint.name} on {cfg.dataset}, architecture {mn.arch_label(sizes)} ({samples} networks): "
               f"one layer and {frac:.0%} of the other weights zeroed after {steps_before} updates; test accuracy "
               f"before {res['accuracy_before']:.4f}, min after {res['accuracy_min_after']:.4f}, "
               f"best after {res['accuracy_best_after']:.4f}, after {steps_after} more updates "
               f"{res['accuracy_recovered']:.4f}; {files}")


@study_app.command("stability")
def study_stability(
    dataset: Dataset = typer.Option(Dataset.iris, help="Task data (the abstract: iris)."),
    arch: str = typer.Option("4,16,3", help="Task architecture."),
    iterations: int = typer.Option(2000, help="Meta-training iterations for each of the two rules."),
    horizon: int = typer.Option(1000, help="Rule updates applied when measuring stability."),
    samples: int = typer.Option(16, help="Networks averaged in the loss curve."),
    fresh_frac: float = typer.Option(0.25, help="Share of each pooled batch replaced by fresh networks (pool states live about steps / fresh_frac updates); the README shows what it does to stability on iris."),
    steps_max: int = typer.Option(50, help="Most rule updates per meta-training iteration (fewest: 10)."),
    out: Path = typer.Option(Path("runs/stability"), help="Folder for both rules and stability.json."),
    checkpoint: Optional[Path] = typer.Option(None, help="Measure this rule instead of meta-training two: test accuracy over HORIZON updates on ARCH, updates within 0.02 of its best (MNIST: e.g. --dataset mnist --arch 784,50,30,10, or a CNN conv:8,16)."),
    hidden_clip: Optional[float] = typer.Option(None, min=0.0, help="With --checkpoint: bound the rule's hidden states to [-CLIP, CLIP] after every update instead of the rule's own bound (0: unbounded), e.g. to measure a rule trained without one."),
    png: Optional[Path] = typer.Option(None, help="Figure: test accuracy (with --checkpoint) or both rules' training loss over updates."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    ray: Optional[str] = typer.Option(None, help=RAY_HELP),
):
    """Table 1 of the MetaNCA abstract (Barot, "Meta-Neural Cellular Automata"): meta-train with and without sample pooling, then count stable updates."""
    from localrules.data.tabular import load_split
    from localrules.studies.metanca_studies import stability_row
    from localrules.tasks import metanca as mn

    dev = setup(device, threads)
    sizes = _arch(arch)
    if isinstance(sizes, str) and checkpoint is None:
        raise typer.BadParameter("the two meta-trained rules of Table 1 grow MLPs; a CNN needs --checkpoint "
                                 "(a rule meta-trained on CNNs)", param_hint="--arch")
    if checkpoint is not None:
        from localrules.studies.metanca_studies import accuracy_curve, accuracy_stability

        rule, cfg, _ = mn.load(checkpoint, dev)
        if hidden_clip is not None:
            mn.set_hidden_clip(rule, hidden_clip)
        data = load_split(cfg.dataset, cfg.split_seed, data_dir)
        if not isinstance(sizes, str) and (sizes[0] != data.n_features or sizes[-1] != data.n_classes):
            raise typer.BadParameter(f"{cfg.dataset} needs {data.n_features} inputs and {data.n_classes} outputs",
                                     param_hint="--arch")
        acc = accuracy_curve(rule, cfg, sizes, data, samples, horizon, seed)
        label = mn.arch_label(sizes)
        res = {"checkpoint": str(checkpoint), "arch": label, "samples": samples, "horizon": horizon,
               "hidden_clip": mn.hidden_clip(rule),
               **accuracy_stability(acc), "accuracy_curve": acc.tolist()}
        out.mkdir(parents=True, exist_ok=True)
        (out / "accuracy_stability.json").write_text(json.dumps(res, indent=1))
        if png:
            from localrules.viz.plots import plot_stability

            plot_stability(res, png)
        typer.echo(f"{label}: best test accuracy {res['best_accuracy']:.4f} after {res['updates_to_best']} "
                   f"updates, {res['updates_within_band']} updates after it within 0.02, "
                   f"{res['final_accuracy']:.4f} after {horizon}; {out / 'accuracy_stability.json'}")
        return
    data = load_split(dataset.value, 0, data_dir)
    names = {128: "sample_pooling", 0: "no_pooling"}  # each row meta-trains its own scratch run in OUT/NAME
    jobs = [(dataset.value, pool, data, sizes, fresh_frac, iterations, steps_max, horizon, samples, seed,
             str(out / name), str(dev), not ray) for pool, name in names.items()]
    if ray:
        from localrules.studies.ray_cells import run_cells

        found = {names[r["pool"]]: r for r in run_cells(stability_row, jobs, ray, gpu=dev.type == "cuda")}
    else:
        found = {names[j[1]]: stability_row(j) for j in jobs}
    rows = {name: {k: v for k, v in found[name].items() if k != "pool"} for name in names.values()}
    (out / "stability.json").write_text(json.dumps(rows, indent=1))
    if png:
        from localrules.viz.plots import plot_stability

        plot_stability(rows, png)
    for name, r in rows.items():
        typer.echo(f"{name}: {r['updates_to_min']} updates to the minimum loss {r['min_loss']:.4f}, "
                   f"{r['updates_within_10pct']} updates within 10 % of it")
    typer.echo(f"stability on {dataset.value} {list(sizes)} (Table 1 of the MetaNCA abstract): results in "
               f"{out / 'stability.json'}, the two rules in {', '.join(str(out / n) for n in names.values())}")


@study_app.command("transfer")
def study_transfer(
    checkpoint: Optional[Path] = typer.Option(None, help="A MetaNCA rule (model.safetensors); default the shipped MNIST rule."),
    dataset: Dataset = typer.Option(Dataset.digits, help="A task the rule may not have been meta-trained on."),
    arch: str = typer.Option("64,30,10", help="Task architecture for that dataset."),
    samples: int = typer.Option(100, help="Networks grown."),
    steps: int = typer.Option(30, help="Rule updates per network."),
    json_out: Optional[Path] = typer.Option(None, "--json"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
):
    """Grow networks for another dataset with a trained rule: does the rule transfer?"""
    from localrules.data.tabular import load_split
    from localrules.studies.metanca_studies import grow_accuracy
    from localrules.tasks import metanca as mn

    checkpoint = checkpoint or mn.PRETRAINED_PATH
    dev = setup(device, threads)
    rule, cfg, _ = mn.load(checkpoint, dev)
    sizes = tuple(_ints(arch, "--arch"))
    data = load_split(dataset.value, 0, data_dir)
    if sizes[0] != data.n_features or sizes[-1] != data.n_classes:
        raise typer.BadParameter(f"{dataset.value} needs {data.n_features} inputs and {data.n_classes} outputs",
                                 param_hint="--arch")
    acc = grow_accuracy(rule, cfg, sizes, data, samples, steps, seed)
    res = {"checkpoint": str(checkpoint), "trained_on": cfg.dataset, "data_conditioned": cfg.data_conditioned,
           "dataset": dataset.value, "arch": list(sizes), "samples": samples, "steps": steps,
           "mean_accuracy": acc.mean().item(), "std": acc.std().item() if samples > 1 else 0.0,
           "chance": 1.0 / data.n_classes}
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=1))
    typer.echo(f"{dataset.value} {list(sizes)}: {res['mean_accuracy']:.4f} +- {res['std']:.4f} "
               f"(chance {res['chance']:.2f}) over {samples} networks grown by {checkpoint.name}, meta-trained on "
               f"{cfg.dataset}" + (f"; results in {json_out}" if json_out else ""))
