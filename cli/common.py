"""The command groups and shared option texts of the ``localrules`` CLI."""

import shlex
import sys
from pathlib import Path

import typer

DEVICE_HELP = "auto (CUDA when present), cpu or cuda."
MINUTES_HELP = ("Wall-clock budget: stop after the first iteration past this many minutes (0 = none) "
                "and write the checkpoint as at the end; continue later with --resume.")
DATA_HELP = ("Folder with the four MNIST IDX files (.gz or plain); default $LOCALRULES_DATA, "
             "then the cache, then a download.")

run_app = typer.Typer(help="Train a system, or evaluate its shipped model with --pretrained. Add --nproc N "
                           "to any of them to train in N processes (torch.distributed, see docs/scaling.md).",
                      no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a checkpoint with the system's paper protocol.", no_args_is_help=True)
study_app = typer.Typer(help="Studies: heatmaps, zero-out robustness, stability.", no_args_is_help=True)


def command_line() -> str:
    """The command as typed, recorded in checkpoints for model cards (``python -m localrules``,
    whose argv[0] is the package's ``__main__.py``, is recorded as ``localrules``)."""
    first = Path(sys.argv[0])
    if first.name == "localrules" or (first.name == "__main__.py" and first.parent.name == "localrules"):
        return shlex.join(["localrules", *sys.argv[1:]])
    return shlex.join(sys.argv)


def setup(device: str, threads: int | None = None):
    """Resolve ``--device`` and apply ``--threads``; returns the torch.device."""
    import torch

    from localrules.device import resolve_device

    if threads:
        torch.set_num_threads(threads)
    return resolve_device(device)


MAX_BAD_HELP = ("Stop (writing the last good weights as the checkpoint) after this many iterations in a row "
                "with a non-finite loss or gradient; each is skipped, rolled back to the last good "
                "weights in memory and halves the learning rate.")
OVERWRITE_HELP = "Replace the run already in OUT (its model, state and metrics); without it such a folder is refused."


def resumed_config(ctx: typer.Context, tcfg, out: Path, resume: bool, options: dict[str, tuple[str, ...]]):
    """On ``--resume``: the training options recorded in OUT, except those given on this command
    line (``options``: parameter name -> the TrainConfig fields it sets); else ``tcfg``."""
    if not resume:
        return tcfg
    from localrules.train.resume import recorded_train_config, resolve

    def typed(name: str) -> bool:  # by name: typer may bring its own copy of click's enum
        return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")

    given = {f for name, fs in options.items() if typed(name) for f in fs}
    return resolve(tcfg, recorded_train_config(out), given)


def init_weights(task, path: Path, load, shape: tuple[str, ...], option: str, what: str = "model") -> None:
    """Start ``task.model`` from the weights saved at ``path`` (read with the task's ``load``), with
    a fresh pool and optimizer; the Config fields in ``shape``, which fix the tensors, must agree."""
    if not Path(path).with_suffix(".safetensors").is_file():
        raise typer.BadParameter(f"no checkpoint at {path}", param_hint=option)
    model, cfg, _ = load(path)
    diff = {k: (getattr(cfg, k), getattr(task.cfg, k)) for k in shape if getattr(cfg, k) != getattr(task.cfg, k)}
    if diff:
        raise typer.BadParameter(f"{path} has another {what} shape (saved vs now: {diff})", param_hint=option)
    task.model.load_state_dict(model.state_dict())


def accelerate(model, device, compile: bool | None, cuda_graphs: bool, system: str, iterations: int) -> None:
    """Apply ``--compile`` / ``--cuda-graphs`` to ``model`` in place (None: auto, the default
    measured for this device and system, for a training of ``iterations``)."""
    from localrules.train.accelerate import backend, compile_model, resolve

    if cuda_graphs and compile is False:
        raise typer.BadParameter("--cuda-graphs records compiled steps: leave out --no-compile", param_hint="--cuda-graphs")
    if not (cuda_graphs or resolve(compile, device, system, iterations)):
        return
    try:
        compile_model(model, device, cuda_graphs, fallback=compile is None)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--cuda-graphs") from e
    typer.echo(f"compiled steps ({backend()}{', CUDA graphs' if cuda_graphs else ''}): the first iterations compile")
