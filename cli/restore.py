"""``localrules run|eval restore`` and ``localrules study restore-damage``."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .common import DATA_HELP, DEVICE_HELP, MINUTES_HELP, command_line, eval_app, run_app, setup, study_app

RESTORERS = ("hybrid", "ca", "cnn-ae")


class RestoreModel(str, Enum):
    hybrid = "hybrid"
    ca = "ca"
    cnn_ae = "cnn-ae"
    classifier = "classifier"


def _test_digits(n: int, data_dir, device):
    from localrules.data.arrays import to_unit_pixels
    from localrules.data.mnist import load_mnist

    import torch

    x, y = load_mnist("test", data_dir)
    if n:
        x, y = x[:n], y[:n]
    return to_unit_pixels(x).to(device), torch.as_tensor(y).to(device)


def _load_models(folder: Optional[Path], device):
    """(restorers, classifier) from ``folder`` (default: the shipped models)."""
    from localrules.tasks import restore as rs

    folder = folder or rs.PRETRAINED_DIR
    paths = {name: folder / name / "model.safetensors" for name in (*RESTORERS, "classifier")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise typer.BadParameter(f"missing checkpoints: {', '.join(missing)} (train them with "
                                 f"`localrules run restore --model NAME --out {folder}/NAME`)")
    loaded = {name: rs.load(p, device)[0] for name, p in paths.items()}
    classifier = loaded.pop("classifier")
    return loaded, classifier


@run_app.command("restore")
def run_restore(
    model: RestoreModel = typer.Option(RestoreModel.hybrid, help="hybrid (CA + MLP gate), ca (CA only), cnn-ae (baseline) or classifier (the reference digit classifier)."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default runs/restore/MODEL)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/train_state.pt."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Skip training: evaluate the shipped models (all three and the floor) on N test digits."),
    iterations: int = typer.Option(40_000, help="Mini-batches (the text: 40k of 64)."),
    minutes: float = typer.Option(0.0, min=0, help=MINUTES_HELP),
    lr: float = typer.Option(1e-3, help="Adam learning rate; /10 at 60 % and 85 % of the run."),
    mask_frac: float = typer.Option(0.7, help="Fraction of pixels blanked in training."),
    n: int = typer.Option(2000, help="With --pretrained: test digits to evaluate."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
):
    """Restoration of 70 %-masked digits: train one model, or evaluate trained ones (--pretrained)."""
    import torch

    from localrules.data.arrays import to_unit_pixels
    from localrules.data.mnist import load_mnist
    from localrules.tasks import restore as rs
    from localrules.train.loop import TrainConfig, train

    dev = setup(device, threads)
    if pretrained:
        _eval(None, n, 0.7, None, None, dev, data_dir, seed)
        return
    out = out or Path("runs/restore") / model.value
    cfg = rs.Config(model=model.value, mask_frac=mask_frac).validate()
    x, y = load_mnist("train", data_dir)
    torch.manual_seed(seed)
    task = rs.RestoreTask(cfg, to_unit_pixels(x), torch.as_tensor(y), dev)
    tcfg = TrainConfig(iterations=iterations, lr=lr, steps_min=cfg.steps, steps_max=cfg.steps, seed=seed,
                       normalize_grads=False,
                       lr_milestones=(int(0.6 * iterations), int(0.85 * iterations)), minutes=minutes)
    typer.echo(f"restore/{cfg.model}: {sum(p.numel() for p in task.model.parameters()):,} parameters, device={dev}")
    last = train(task, tcfg, out, dev, resume=resume, command=command_line())
    typer.echo(f"done: {json.dumps(last)}; weights in {out / 'model.safetensors'}")


def _eval(folder, n, mask_frac, json_out, png, device, data_dir, seed, card=None, card_notes=""):
    import time

    import torch

    from localrules.studies.restore_eval import evaluate
    from localrules.tasks.restore import PRETRAINED_DIR

    folder = folder or PRETRAINED_DIR
    models, classifier = _load_models(folder, device)
    images, labels = _test_digits(n, data_dir, device)
    t0 = time.perf_counter()
    res, restored = evaluate(models, classifier, images, labels, mask_frac, seed)
    res["seconds"] = time.perf_counter() - t0
    typer.echo(f"{len(images):,} digits, {res['seconds']:.1f} s on {device} ({torch.get_num_threads()} threads)")
    for name, row in res["models"].items():
        flops = f"{row['flops_per_sample'] / 1e6:.1f} MFLOP" if row["flops_per_sample"] else "-"
        typer.echo(f"{name:>13}: {row['psnr_db']:.2f} dB, digit-ID {row['digit_id_accuracy']:.4f}, "
                   f"{row['params']:,} params, {flops}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=1))
    if png:
        from localrules.viz.plots import plot_restorations

        plot_restorations(images, restored, png)
    if card:
        from localrules.studies.report import restore_card

        card.write_text(restore_card(folder, res, card_notes))
        typer.echo(f"model card: {card}")
    return res


@eval_app.command("restore")
def eval_restore(
    models: Optional[Path] = typer.Option(None, help="Folder with hybrid/, ca/, cnn-ae/ and classifier/ checkpoints (default: the shipped models; yours are in runs/restore)."),
    mask_frac: float = typer.Option(0.7, help="Fraction of pixels blanked (same masks for every model)."),
    n: int = typer.Option(0, help="First N test digits (0 = all 10,000)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the table here."),
    png: Optional[Path] = typer.Option(None, help="Grid: masked input, each restoration, the clean digit."),
    seed: int = typer.Option(0, help="Seed of the masks."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    card: Optional[Path] = typer.Option(None, help="Also write a Markdown model card (table + each model's training record)."),
    card_notes: str = typer.Option("", help="Free text appended to the model card."),
):
    """All restoration models and the interpolation floor on the same masked test digits."""
    _eval(models, n, mask_frac, json_out, png, setup(device, threads), data_dir, seed,
          card, card_notes)


@study_app.command("restore-damage")
def study_restore_damage(
    models: Optional[Path] = typer.Option(None, help="Folder with the trained models (default: the shipped ones)."),
    damage_frac: float = typer.Option(0.3, help="Fraction of lattice cells zeroed halfway through the run."),
    n: int = typer.Option(2000, help="Test digits."),
    json_out: Path = typer.Option(Path("runs/restore-damage.json"), "--json"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
):
    """Robustness: digit-ID accuracy drop when 30 % of the lattice cells are zeroed mid-run."""
    from localrules.studies.restore_eval import damage_study

    dev = setup(device, threads)
    restorers, classifier = _load_models(models, dev)
    images, labels = _test_digits(n, data_dir, dev)
    res = damage_study(restorers, classifier, images, labels, 0.7, damage_frac, seed)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(res, indent=1))
    for name, r in res["models"].items():
        typer.echo(f"{name:>7}: intact {r['accuracy_intact']:.4f}, damaged {r['accuracy_damaged']:.4f}, "
                   f"drop {r['accuracy_drop']:.4f}")
