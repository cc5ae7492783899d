"""The ``localrules`` command line (typer): parses options, builds a Config, calls the library."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Learn local rules: neural cellular automata that reach a global result from local talk.",
    no_args_is_help=True,
    add_completion=False,
)

DEVICE_HELP = "auto (CUDA when present), cpu or cuda."
DATA_HELP = "Folder with the four MNIST IDX files (.gz or plain); default $LOCALRULES_DATA, then the cache, then a download."


class System(str, Enum):
    mnist_selfclassify = "mnist-selfclassify"


class Loss(str, Enum):
    l2 = "l2"
    ce = "ce"


class EngineName(str, Enum):
    alive = "alive"
    dense = "dense"
    graph = "graph"


@app.command()
def run(
    system: System = typer.Argument(..., help="Which system to train (or, with --pretrained, evaluate)."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Skip training: evaluate the shipped model on a test subset, write plots and a GIF."),
    out: Path = typer.Option(Path("runs/mnist-selfclassify"), help="Run folder: checkpoints, metrics.jsonl, plots."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/train_state.pt."),
    loss: Loss = typer.Option(Loss.l2, help="l2 (one-hot target, the paper's stable choice) or ce (cross-entropy)."),
    noise: float = typer.Option(0.02, help="Residual-noise std added to updates in training (0 = off)."),
    iterations: int = typer.Option(100_000, help="Training iterations (the paper: 100k)."),
    lr: float = typer.Option(1e-3, help="Adam learning rate; divided by 10 at each milestone."),
    milestones: str = typer.Option("30000,70000", help="Comma-separated iterations where the LR drops 10x."),
    batch_size: int = typer.Option(16, help="Digits per iteration."),
    pool_size: int = typer.Option(160, help="Persistent states in the sample pool."),
    steps: int = typer.Option(20, help="CA steps per training iteration."),
    engine: EngineName = typer.Option(EngineName.alive, help="alive: compute only alive cells (fast); dense: full grid conv; graph: PyG message passing."),
    checkpoint_every: int = typer.Option(500, help="Iterations between checkpoints."),
    seed: int = typer.Option(0, help="Random seed."),
    n: int = typer.Option(500, help="With --pretrained: test digits to evaluate."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to OUT/tensorboard."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch (default: PyTorch's choice)."),
):
    """Train a system from scratch (or --resume), or evaluate the shipped model (--pretrained)."""
    import torch

    from localrules.data.mnist import load_mnist
    from localrules.device import resolve_device
    from localrules.tasks import mnist_selfclassify as ms
    from localrules.train.loop import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if pretrained:
        _evaluate(ms.pretrained_path(loss.value), n=n, steps=400, mutate_at=200, out=out,
                  device=dev, data_dir=data_dir, engine=engine.value, seed=seed, noise=None,
                  json_path=out / "eval.json", images=None, labels=None)
        return
    cfg = ms.Config(loss=loss.value, noise_std=noise, batch_size=batch_size,
                    pool_size=pool_size, engine=engine.value).validate()
    tcfg = TrainConfig(iterations=iterations, lr=lr, seed=seed, steps_min=steps, steps_max=steps,
                       lr_milestones=tuple(int(m) for m in milestones.split(",") if m),
                       checkpoint_every=checkpoint_every)
    images, labels = load_mnist("train", data_dir)
    torch.manual_seed(seed)
    task = ms.SelfClassifyTask(cfg, images, labels, dev)
    typer.echo(f"mnist-selfclassify: {sum(p.numel() for p in task.model.parameters()):,} parameters, "
               f"loss={cfg.loss}, noise={cfg.noise_std}, engine={cfg.engine}, device={dev}")
    last = train(task, tcfg, out, dev, resume=resume, tensorboard=tensorboard)
    typer.echo(f"done: {json.dumps(last)}; weights in {out / 'model.safetensors'}")
