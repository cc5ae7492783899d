"""``localrules run|eval mnist-selfclassify``: the self-classifying MNIST NCA."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .helpstyle import panels
from . import summary
from .common import (DATA_HELP, DEVICE_HELP, MAX_BAD_HELP, MINUTES_HELP, OVERWRITE_HELP, accelerate, command_line, eval_app,
                     init_weights, resumed_config, run_app, setup)
from .options import (MS, TRAIN, LRRule, Precision, compile_option, default, graphs_option, ints, lr_rule_option, option,
                      precision_option)


class Loss(str, Enum):
    l2 = "l2"
    ce = "ce"


class PerceptionKind(str, Enum):
    learned = "learned"
    sobel = "sobel"


class Transform(str, Enum):
    scale = "scale"
    shift = "shift"
    rotate = "rotate"
    stroke = "stroke"
    mix = "mix"
    all = "all"


class EngineName(str, Enum):
    alive = "alive"
    dense = "dense"
    graph = "graph"


@run_app.command("mnist-selfclassify")
def run_selfclassify(
    ctx: typer.Context,
    pretrained: bool = typer.Option(False, "--pretrained", help="Skip training: evaluate the shipped model on a test subset, write plots and a GIF."),
    out: Path = typer.Option(Path("runs/mnist-selfclassify"), help="Run folder: checkpoints, metrics.jsonl, plots."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/train_state.pt, to the run's recorded --iterations unless given; a changed --lr or --milestones applies from the resume iteration on and is recorded."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    loss: Loss = option(MS, "loss", to=Loss, help="l2 (one-hot target, the paper's stable choice) or ce (cross-entropy)."),
    noise: float = option(MS, "noise_std", help="Residual-noise std added to updates in training (0 = off)."),
    iterations: int = option(TRAIN, "iterations", help="Training iterations (the paper: 100k)."),
    lr: float = option(TRAIN, "lr", help="Adam learning rate; divided by 10 at each milestone."),
    milestones: str = option(TRAIN, "lr_milestones", to=ints, help="Comma-separated iterations where the LR drops 10x."),
    batch_size: int = option(MS, "batch_size", help="Digits per iteration."),
    lr_rule: LRRule = lr_rule_option(default(MS, "batch_size")),
    pool_size: int = option(MS, "pool_size", help="Persistent states in the sample pool."),
    steps: int = option(TRAIN, "steps_min", help="CA steps per training iteration."),
    perception: PerceptionKind = option(MS, "perception", to=PerceptionKind, help="learned 3x3 kernels (the paper) or fixed identity + Sobel."),
    engine: EngineName = option(MS, "engine", to=EngineName, help="alive: compute only alive cells (fast); dense: full grid conv; graph: PyG message passing."),
    init_model: Optional[Path] = typer.Option(None, help="Start from this checkpoint's weights (fresh pool and optimizer), e.g. to fine-tune the shipped model with --augment; its shape options must match."),
    augment: bool = option(MS, "augment", "--augment", help="Beyond the paper: change every digit drawn into the pool at random (scale 0.7-1.2, shift up to 4 px, rotation up to 25 degrees, stroke thinner or thicker), for hand-drawn digits."),
    checkpoint_every: int = option(TRAIN, "checkpoint_every", help="Iterations between checkpoints."),
    max_bad_steps: int = option(TRAIN, "max_bad_steps", help=MAX_BAD_HELP),
    minutes: float = option(TRAIN, "minutes", min=0, help=MINUTES_HELP),
    seed: int = option(TRAIN, "seed", help="Random seed."),
    runs: int = typer.Option(1, min=1, help="Train this many runs at once as one batched model (seeds SEED, SEED+1, ...; each its own pool and Adam state; the dense engine), for more work per GPU launch; run K's checkpoint goes to OUT/run-K, which eval loads."),
    n: int = typer.Option(500, help="With --pretrained: test digits to evaluate."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to OUT/tensorboard."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch (default: PyTorch's choice)."),
    compile: Optional[bool] = compile_option(),
    cuda_graphs: bool = graphs_option(),
    precision: Precision = precision_option(),
):
    """Self-classifying MNIST: train from scratch (or --resume), or evaluate the shipped model (--pretrained)."""
    import torch

    from localrules.data.mnist import load_mnist
    from localrules.tasks import mnist_selfclassify as ms
    from localrules.train.loop import TrainConfig, train
    from localrules.train.lr_rule import scaled_lr

    dev = setup(device, threads)
    if pretrained:
        _eval_report(ms.pretrained_path(loss.value), n=n, steps=400, mutate_at=200, out=out,
                     json_path=out / "eval.json", device=dev, data_dir=data_dir,
                     engine=engine.value, noise=None, batch_size=0, seed=seed)
        return
    cfg = ms.Config(loss=loss.value, noise_std=noise, batch_size=batch_size, perception=perception.value,
                    pool_size=pool_size, engine=engine.value, augment=augment).validate()
    lr, rule = scaled_lr(lr, batch_size, default(MS, "batch_size"), lr_rule.value)
    tcfg = TrainConfig(iterations=iterations, lr=lr, lr_scaling=rule, seed=seed, steps_min=steps, steps_max=steps,
                       lr_milestones=tuple(int(m) for m in milestones.split(",") if m),
                       checkpoint_every=checkpoint_every, minutes=minutes, max_bad_steps=max_bad_steps,
                       precision=precision.value)
    tcfg = resumed_config(ctx, tcfg, out, resume, {"max_bad_steps": ("max_bad_steps",), "precision": ("precision",),
        "iterations": ("iterations",), "lr": ("lr", "lr_scaling"), "lr_rule": ("lr", "lr_scaling"), "milestones": ("lr_milestones",),
        "steps": ("steps_min", "steps_max"), "checkpoint_every": ("checkpoint_every",), "seed": ("seed",)})
    images, labels = load_mnist("train", data_dir)
    if runs > 1:
        return _train_runs(cfg, tcfg, images, labels, dev, runs, seed, init_model, out, resume, tensorboard, overwrite)
    torch.manual_seed(seed)
    task = ms.SelfClassifyTask(cfg, images, labels, dev)
    if init_model is not None and not resume:
        init_weights(task, init_model, ms.load, SHAPE, "--init-model")
    accelerate(task.model, dev, compile, cuda_graphs, "mnist-selfclassify", tcfg.iterations)
    typer.echo(f"mnist-selfclassify: {sum(p.numel() for p in task.model.parameters()):,} parameters, "
               f"loss={cfg.loss}, noise={cfg.noise_std}, engine={cfg.engine}, augment={cfg.augment}, device={dev}")
    last = train(task, tcfg, out, dev, resume=resume, tensorboard=tensorboard,
                 command=command_line(), overwrite=overwrite)
    if last:
        typer.echo(summary.training(f"mnist-selfclassify (loss {cfg.loss}, noise {cfg.noise_std:g}, {cfg.engine} engine)", last, out, "weights"))


SHAPE = ("hidden_channels", "perception", "perception_dim", "hidden")  # the Config fields that fix the tensors


def _train_runs(cfg, tcfg, images, labels, dev, runs, seed, init_model, out, resume, tensorboard, overwrite):
    """``--runs N``: N runs as one batched model (localrules.tasks.selfclassify_runs), each exported
    to OUT/run-K after training (also after a stop: from the checkpoint on disk)."""
    from dataclasses import replace

    from localrules.tasks import mnist_selfclassify as ms
    from localrules.tasks.selfclassify_runs import SelfClassifyRuns, export_runs
    from localrules.train.loop import train

    if cfg.engine != "dense":
        typer.echo(f"--runs {runs}: the dense engine (the {cfg.engine} engine's cell counts differ between runs)")
        cfg = replace(cfg, engine="dense")
    task = SelfClassifyRuns(cfg, images, labels, dev, list(range(seed, seed + runs)))
    if init_model is not None and not resume:
        for t in task.tasks:
            init_weights(t, init_model, ms.load, SHAPE, "--init-model")
    typer.echo(f"mnist-selfclassify: {runs} runs (seeds {seed}-{seed + runs - 1}) of "
               f"{sum(p.numel() for p in task.tasks[0].model.parameters()):,} parameters as one batched model, "
               f"loss={cfg.loss}, noise={cfg.noise_std}, augment={cfg.augment}, device={dev}")
    try:
        last = train(task, tcfg, out, dev, resume=resume, tensorboard=tensorboard, command=command_line(),
                     overwrite=overwrite)
    finally:  # also after a stop: each run from the batched checkpoint on disk
        try:
            typer.echo(f"runs: {', '.join(str(p) for p in export_runs(out))}")
        except (FileNotFoundError, ValueError):  # no batched checkpoint of this training in OUT
            pass
    if last:
        typer.echo(summary.training(f"mnist-selfclassify, {runs} batched runs (loss {cfg.loss}, noise "
                                    f"{cfg.noise_std:g})", last, out, "weights"))


panels(run_selfclassify, {
    "Run": "pretrained n out resume overwrite init_model runs",
    "Model": "loss noise perception engine augment",
    "Training": "iterations lr milestones batch_size lr_rule pool_size steps checkpoint_every max_bad_steps minutes seed",
    "Machine": "device threads compile cuda_graphs precision data_dir tensorboard",
})


def _eval_report(checkpoint, n, steps, mutate_at, out, json_path, device, data_dir, engine,
                 noise, batch_size, seed, images=None, labels=None, workers=0, transform=None, compile=None):
    from localrules.data.arrays import load_image_arrays, to_unit_pixels
    from localrules.data.mnist import load_mnist
    from localrules.studies.curves import SUMMARY
    from localrules.studies.report import selfclassify_report
    import torch

    if images is not None or labels is not None:
        if images is None or labels is None:
            raise typer.BadParameter("--images and --labels go together")
        pixels, y = load_image_arrays(images, labels)
    else:
        x, y = load_mnist("test", data_dir)
        pixels, y = to_unit_pixels(x), torch.as_tensor(y)
    if n:
        pixels, y = pixels[:n], y[:n]
    if not batch_size:
        batch_size = 1000 if device.type == "cuda" else 50
    if not workers:  # on CPU, one single-threaded process per thread scales better than threads
        workers = torch.get_num_threads() if device.type == "cpu" else 1
    from localrules.train.accelerate import resolve

    opts = dict(device=device, noise_std=noise, steps=steps, mutate_at=mutate_at or None, batch_size=batch_size,
                engine=engine, workers=workers, compile=resolve(compile, device, "mnist-selfclassify eval"))
    if transform:
        return _transform_report(checkpoint, pixels, y, transform, out, json_path, seed, opts)
    res = selfclassify_report(checkpoint, pixels, y, out, json_path, seed=seed, **opts)
    line = ", ".join(f"{k}={res[k]:.4f}" for k in SUMMARY if k in res)
    typer.echo(f"{res['n_digits']} digits, {steps} steps, {res['seconds']:.1f} s: {line}")
    if out:
        typer.echo(f"plots: {', '.join(res.get('plots', []))}")
    if json_path:
        typer.echo(f"json: {json_path}")
    return res


def _transform_report(checkpoint, pixels, y, kind, out, json_path, seed, opts):
    """``eval --transform KIND``: the protocol at every level of one change of the digits (or of
    every change and the random mix, with ``all``)."""
    from localrules.data.augment import SWEEPS
    from localrules.studies.curves import SUMMARY
    from localrules.studies.robustness import transform_sweep

    results = {}
    for k in (["mix", *SWEEPS] if kind == "all" else [kind]):
        results[k] = transform_sweep(checkpoint, pixels, y, k, seed=seed,
                                     progress=lambda level, k=k: typer.echo(f"{k} {level}: ...", err=True), **opts)
        for row in results[k].get("levels", [results[k]]):
            head = f"{k} {row['level']}" if "level" in row else k
            typer.echo(f"{head}: " + ", ".join(f"{m}={row[m]:.4f}" for m in SUMMARY if m in row))
    res = results[kind] if kind != "all" else {"transform": "all", "n_digits": len(pixels), **results}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(res, indent=1))
        typer.echo(f"json: {json_path}")
    sweeps = [r for r in results.values() if "levels" in r]
    if out and sweeps:
        from localrules.viz.plots import plot_transform_sweep

        Path(out).mkdir(parents=True, exist_ok=True)
        typer.echo(f"plot: {plot_transform_sweep(sweeps, Path(out) / f'transform-{kind}.png')}")
    return res


@eval_app.command("mnist-selfclassify")
def eval_selfclassify(
    checkpoint: Optional[Path] = typer.Option(None, help="A model.safetensors written by training; default the shipped L2+noise model."),
    n: int = typer.Option(0, help="Evaluate the first N digits only (0 = all 10,000 test digits)."),
    steps: int = typer.Option(400, help="CA steps in total."),
    mutate_at: int = typer.Option(200, help="Step at which every digit is mutated into another test digit (0 = never)."),
    images: Optional[Path] = typer.Option(None, help="Your own digits: a .npy array (N, H, W), uint8 0..255 or float 0..1."),
    labels: Optional[Path] = typer.Option(None, help="Labels for --images: a .npy integer array (N,) in 0..9."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write per-step accuracy / agreement and the summary here."),
    plots: Optional[Path] = typer.Option(None, help="Folder for curves.png, magnitudes.png and cells.gif."),
    noise: Optional[float] = typer.Option(None, help="Residual-noise std during evaluation (default: as the model trained)."),
    engine: EngineName = typer.Option(EngineName.alive, help="alive (fast), dense or graph: the same model; results differ only through the random update masks."),
    batch_size: int = typer.Option(0, help="Digits evolved at once (0 = auto: 50 on CPU, where small batches stay in cache and run 2x faster than 1000, and 1000 on CUDA)."),
    seed: int = typer.Option(0, help="Seed for update masks, noise and mutation targets."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    workers: int = typer.Option(0, help="CPU worker processes of one thread each (0 = auto: as many as threads); results do not depend on it."),
    transform: Optional[Transform] = typer.Option(None, help="Evaluate on changed test digits instead: scale (0.6-1.3), shift (0-6 px), rotate (-30..30 degrees), stroke (thinner / thicker) as a sweep with a plot in --plots, or mix (each digit changed at random; the summary keys of a plain evaluation), or all of them (one JSON, one figure)."),
    card: Optional[Path] = typer.Option(None, help="Also write a Markdown model card for the checkpoint here."),
    card_title: str = typer.Option("Model card", help="Title of the model card."),
    card_notes: str = typer.Option("", help="Free text appended to the model card."),
    compile: Optional[bool] = compile_option(),
):
    """Run the paper's protocol (400 steps, mutation at 200): accuracy and agreement over time."""
    from localrules.tasks import mnist_selfclassify as ms

    dev = setup(device, threads)
    ckpt = checkpoint or ms.pretrained_path("l2")
    if not ckpt.with_suffix(".safetensors").is_file():
        raise typer.BadParameter(f"no checkpoint at {ckpt}", param_hint="--checkpoint")
    if card and transform:
        raise typer.BadParameter("a model card describes the plain evaluation; leave out --transform",
                                 param_hint="--card")
    res = _eval_report(ckpt, n=n, steps=steps, mutate_at=mutate_at, out=plots, json_path=json_out,
                 device=dev, data_dir=data_dir, engine=engine.value,
                 noise=noise, batch_size=batch_size, seed=seed, images=images, labels=labels,
                 workers=workers, transform=transform.value if transform else None, compile=compile)
    if card:
        from localrules.studies.report import model_card

        card.write_text(model_card(ckpt, res, card_title, card_notes))
        typer.echo(f"model card: {card}")
