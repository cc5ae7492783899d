"""``localrules run|eval restore`` and ``localrules study restore-damage|restore-basins``."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from . import summary
from .common import (DATA_HELP, DEVICE_HELP, MAX_BAD_HELP, MINUTES_HELP, OVERWRITE_HELP, accelerate, command_line, eval_app,
                     init_weights, resumed_config, run_app, setup, study_app)
from .options import (CLI_DEFAULTS, LAYOUT_HELP, RS, TRAIN, Layout, LRRule, Precision, compile_option, default, graphs_option, lr_rule_option,
                      option, precision_option)

RESTORERS = ("hybrid", "ca", "cnn-ae")
OPTIONAL = ("ca", "cnn-ae", "unet")  # loaded when the folder has them, as is any other folder (a variant)


class RestoreModel(str, Enum):
    hybrid = "hybrid"
    ca = "ca"
    cnn_ae = "cnn-ae"
    unet = "unet"
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
    """(restorers, classifier) from ``folder`` (default: the shipped models): hybrid/ and
    classifier/ are required; ca/, cnn-ae/, unet/ and then any other sub-folder holding a restore
    checkpoint (e.g. a hybrid variant) are added when present. Each restorer gets
    ``batches_trained``: its checkpoint's iteration (batches of its last run)."""
    from localrules.tasks import restore as rs

    folder = folder or rs.PRETRAINED_DIR
    paths = {name: folder / name / "model.safetensors" for name in ("hybrid", "classifier")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise typer.BadParameter(f"missing checkpoints: {', '.join(missing)} (train them with "
                                 f"`localrules run restore --model NAME --out {folder}/NAME`)")
    extra = [d.name for d in folder.iterdir() if d.name not in paths and (d / "model.safetensors").is_file()]
    for name in sorted(extra, key=lambda n: (OPTIONAL.index(n) if n in OPTIONAL else len(OPTIONAL), n)):
        paths[name] = folder / name / "model.safetensors"
    loaded = {}
    for name, p in paths.items():
        model, _, meta = rs.load(p, device)
        model.batches_trained = meta.get("iteration")
        loaded[name] = model
    classifier = loaded.pop("classifier")
    return loaded, classifier


@run_app.command("restore")
def run_restore(
    ctx: typer.Context,
    model: RestoreModel = option(RS, "model", to=RestoreModel, help="hybrid (CA + MLP gate), ca (CA only), cnn-ae or unet (baselines) or classifier (the reference digit classifier)."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default runs/restore/MODEL)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/train_state.pt, to the run's recorded --iterations unless given; a changed --lr or --iterations (which moves the LR drops) applies from the resume iteration on and is recorded."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    pretrained: bool = typer.Option(False, "--pretrained", help="Skip training: evaluate the shipped models (hybrid, CA alone, CNN auto-encoder, U-Net), the kNN fill and the floor on N test digits."),
    iterations: int = typer.Option(CLI_DEFAULTS["restore"]["iterations"], help="Mini-batches (the text: 40k of 64)."),
    minutes: float = option(TRAIN, "minutes", min=0, help=MINUTES_HELP),
    lr: float = option(TRAIN, "lr", help="Adam learning rate; /10 at 60 % and 85 % of the run."),
    batch_size: int = option(RS, "batch_size", min=1, help="Digits per batch (the text: 64); the pool of lattice states grows with it (1.5x the batch)."),
    lr_rule: LRRule = lr_rule_option(default(RS, "batch_size")),
    max_bad_steps: int = option(TRAIN, "max_bad_steps", help=MAX_BAD_HELP),
    recipe: str = typer.Option("pool", help="pool (default: pool of lattice states, mask rates 0.3-0.9 and region masks, re-masking, damage, 8-16 steps) or plain (the shipped models' first stage: fresh digits, 70 % pixel masks, 10 steps)."),
    mask_frac: Optional[float] = typer.Option(None, help="Train on this one pixel-mask rate only (default: the recipe's)."),
    mask_min: Optional[float] = typer.Option(None, min=0, max=1, help="Lowest pixel-mask rate drawn per digit (default: the recipe's, 0.3 for pool)."),
    mask_max: Optional[float] = typer.Option(None, min=0, max=1, help="Highest pixel-mask rate drawn per digit (default: the recipe's, 0.9 for pool)."),
    mask_channel: bool = typer.Option(False, "--mask-channel", help="hybrid / ca: the mask as a fixed per-cell input channel of the CA."),
    keep_visible: bool = typer.Option(False, "--keep-visible", help="hybrid / ca: the masked image as a fixed input channel; visible pixels kept in the output."),
    clamp_output: bool = typer.Option(False, "--clamp-output", help="hybrid / ca: linear read-out clamped to [0, 1] (outside training) instead of a sigmoid."),
    masked_loss: bool = typer.Option(False, "--masked-loss", help="Loss on the blanked pixels only."),
    channels: int = option(RS, "channels", min=1, help="hybrid / ca: state channels per lattice cell."),
    rule_hidden: int = option(RS, "rule_hidden", min=0, help="hybrid / ca: hidden width of the CA rule (0: none, as shipped)."),
    gate_reads: int = option(RS, "gate_reads", min=1, help="hybrid: maps the gate reads from the lattice (1 as shipped)."),
    gate_pool: int = option(RS, "gate_pool", min=1, help="hybrid: the gate reads its maps average-pooled by this factor (a divisor of the lattice side, 32)."),
    gate_writes: int = option(RS, "gate_writes", min=1, help="hybrid: maps the gate writes, each mixed into every state channel by a learned K x C matrix (1 as shipped: one map, scaled per channel)."),
    gate_hidden: int = option(RS, "gate_hidden", min=1, help="hybrid: hidden units of the gate MLP (1024 as shipped)."),
    dropout: float = option(RS, "dropout", min=0, max=0.99, help="hybrid: dropout on the gate's hidden units in training (0.5 as shipped)."),
    steps_min: Optional[int] = typer.Option(CLI_DEFAULTS["restore"]["steps_min"], min=1, help="Fewest CA steps per batch (default: the recipe's, 8 for pool; --resume keeps the run's)."),
    steps_max: Optional[int] = typer.Option(CLI_DEFAULTS["restore"]["steps_max"], min=1, help="Most CA steps per batch (default: the recipe's, 16 for pool; --resume keeps the run's); more steps train the restored digit to stay put for longer runs."),
    init_model: Optional[Path] = typer.Option(None, help="Start from this checkpoint's weights (fresh pool and optimizer), e.g. to fine-tune a shipped plain-recipe model with the pool recipe: localrules/pretrained/restore/MODEL/model.safetensors; the same --model."),
    n: int = typer.Option(2000, help="With --pretrained: test digits to evaluate."),
    seed: int = option(TRAIN, "seed"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    compile: Optional[bool] = compile_option(),
    cuda_graphs: bool = graphs_option(),
    precision: Precision = precision_option(),
    layout: Layout = typer.Option(Layout.auto, help=LAYOUT_HELP),
):
    """Restoration of 70 %-masked digits: train one model, or evaluate trained ones (--pretrained)."""
    import torch

    from localrules.data.arrays import to_unit_pixels
    from localrules.data.mnist import load_mnist
    from localrules.core.layout import resolve_layout, use_layout
    from localrules.tasks import restore as rs
    from localrules.train.loop import train
    from localrules.train.lr_rule import scaled_lr

    dev = setup(device, threads)
    if pretrained:
        _eval(None, n, 0.7, None, None, dev, data_dir, seed)
        return
    out = out or Path("runs/restore") / model.value
    if recipe not in ("pool", "plain"):
        raise typer.BadParameter(f"--recipe must be pool or plain, not {recipe!r}")
    fixed = {} if mask_frac is None else {"mask_min": mask_frac, "mask_max": mask_frac}
    fixed |= {k: v for k, v in (("mask_min", mask_min), ("mask_max", mask_max)) if v is not None}
    flags = {"mask_channel": mask_channel, "keep_visible": keep_visible, "clamp_output": clamp_output}
    if any(flags.values()) and model.value not in rs.LATTICE_MODELS:
        raise typer.BadParameter(f"{', '.join('--' + k.replace('_', '-') for k, v in flags.items() if v)} "
                                 f"apply to hybrid and ca only, not {model.value}")
    fixed |= {k: v for k, v in flags.items() if v} | ({"masked_loss": True} if masked_loss else {})
    arch = {"channels": channels, "rule_hidden": rule_hidden, "gate_reads": gate_reads, "gate_pool": gate_pool,
            "gate_writes": gate_writes, "gate_hidden": gate_hidden, "dropout": dropout}
    changed = {k: v for k, v in arch.items() if v != default(RS, k)}  # the shipped hybrid's: Config's defaults
    only = {"channels", "rule_hidden"} if model.value == "ca" else set(arch)
    if changed and (model.value not in rs.LATTICE_MODELS or set(changed) - only):
        raise typer.BadParameter(f"{', '.join('--' + k.replace('_', '-') for k in changed)} "
                                 f"do not apply to {model.value}")
    fixed |= changed
    if batch_size != default(RS, "batch_size"):  # the pool keeps its size relative to the batch (96 for 64)
        fixed |= {"batch_size": batch_size,
                  "pool_size": default(RS, "pool_size") * batch_size // default(RS, "batch_size")}
    fixed |= {k: v for k, v in (("steps_min", steps_min), ("steps_max", steps_max)) if v is not None}
    cfg = rs.Config(model=model.value, **{**(rs.PLAIN if recipe == "plain" else {}), **fixed})
    if cfg.mask_min > cfg.mask_max:
        raise typer.BadParameter(f"need --mask-min <= --mask-max (mask_min <= mask_max), not {cfg.mask_min} > {cfg.mask_max}")
    lr, rule = scaled_lr(lr, batch_size, default(RS, "batch_size"), lr_rule.value)
    tcfg = rs.train_config(cfg, iterations, lr, seed, minutes)
    tcfg.lr_scaling = rule
    tcfg.max_bad_steps, tcfg.precision = max_bad_steps, precision.value
    tcfg = resumed_config(ctx, tcfg, out, resume, {"max_bad_steps": ("max_bad_steps",), "precision": ("precision",),
        "iterations": ("iterations", "lr_milestones"), "lr": ("lr", "lr_scaling"), "lr_rule": ("lr", "lr_scaling"), "seed": ("seed",),
        "steps_min": ("steps_min",), "steps_max": ("steps_max",)})
    tcfg.validate()  # its messages name the options, e.g. a reversed --steps-min / --steps-max
    cfg.steps_min, cfg.steps_max = tcfg.steps_min, tcfg.steps_max  # a resumed run's recorded range
    cfg.validate()
    x, y = load_mnist("train", data_dir)
    torch.manual_seed(seed)
    task = rs.RestoreTask(cfg, to_unit_pixels(x), torch.as_tensor(y), dev)
    if init_model is not None and not resume:
        init_weights(task, init_model, rs.load, ("model", "channels", "lattice", "ca_multiplier", "gate_hidden", "gate_out",
                                                 "mask_channel", "keep_visible", "unet_width", "rule_hidden", "gate_reads", "gate_pool",
                                                 "gate_writes"),
                     "--init-model")
        task.seed_pool()
    use_layout(task.model, resolve_layout(layout.value, dev))
    accelerate(task.model, dev, compile, cuda_graphs, "restore", tcfg.iterations)
    typer.echo(f"restore/{cfg.model}: {sum(p.numel() for p in task.model.parameters()):,} parameters, device={dev}")
    last = train(task, tcfg, out, dev, resume=resume, command=command_line(), overwrite=overwrite)
    if last:
        typer.echo(summary.training(f"restore/{cfg.model}", last, out, "weights"))


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name} takes comma-separated numbers, not {text!r}") from None


def _eval(folder, n, mask_frac, json_out, png, device, data_dir, seed, card=None, card_notes="",
          pixel_fracs=(), region_fracs=(), step_multiples=(), knn=True):
    import time

    import torch

    from localrules.progress import bar as progress_bar
    from localrules.studies.restore_eval import evaluate
    from localrules.tasks.restore import PRETRAINED_DIR

    folder = folder or PRETRAINED_DIR
    models, classifier = _load_models(folder, device)
    images, labels = _test_digits(n, data_dir, device)
    knn_train = None
    if knn:  # the kNN fill's memory: the training split
        from localrules.data.arrays import to_unit_pixels
        from localrules.data.mnist import load_mnist

        knn_train = to_unit_pixels(load_mnist("train", data_dir)[0]).to(device)
    t0 = time.perf_counter()
    bar = progress_bar(total=1 + len(pixel_fracs) + len(region_fracs) + len(step_multiples),
                       desc="eval restore", unit="conditions")  # lines in a pipe: one per condition
    res, restored = evaluate(models, classifier, images, labels, mask_frac, seed, knn_train=knn_train)
    bar.update()
    if pixel_fracs or region_fracs:
        from localrules.studies.restore_eval import evaluate_masks

        res["masks"] = evaluate_masks(models, classifier, images, labels, pixel_fracs, region_fracs, seed,
                                      knn_train=knn_train, tick=bar.update)
    if step_multiples:
        from localrules.studies.restore_eval import evaluate_steps

        res["steps"] = evaluate_steps(models, classifier, images, labels, step_multiples, mask_frac, seed,
                                      tick=bar.update)
    bar.close()
    res["seconds"] = time.perf_counter() - t0
    typer.echo(f"{len(images):,} digits, {res['seconds']:.1f} s on {device} ({torch.get_num_threads()} threads)")
    for name, row in res["models"].items():
        flops = f"{row['flops_per_sample'] / 1e6:.1f} MFLOP" if row["flops_per_sample"] else "-"
        batches = f"{row['batches']:,} batches" if row.get("batches") is not None else "- batches"
        typer.echo(f"{name:>13}: {row['psnr_db']:.2f} dB, digit-ID {row['digit_id_accuracy']:.4f}, "
                   f"{row['params']:,} params, {batches}, {flops}")
    for key, rows in res.get("masks", {}).items():
        typer.echo(f"{key:>13}: " + "; ".join(f"{m} {r['psnr_db']:.2f} dB / {r['digit_id_accuracy']:.4f}"
                                             for m, r in rows.items()))
    for key, rows in res.get("steps", {}).items():
        typer.echo(f"{key:>13} steps: " + "; ".join(f"{m} ({r['steps']}) {r['psnr_db']:.2f} dB / "
                                                  f"{r['digit_id_accuracy']:.4f}" for m, r in rows.items()))
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
    mask_fracs: str = typer.Option("0.5,0.7,0.85,0.9", help="Also a table at each of these pixel-mask rates ('' = none)."),
    region_fracs: str = typer.Option("0.25,0.5", help="Also a table with one square region of each of these areas blanked ('' = none)."),
    steps: str = typer.Option("1,2,5", help="Also PSNR / digit-ID of the CA models run for these multiples of their trained steps ('' = none)."),
    knn: bool = typer.Option(True, "--knn/--no-knn", help="Include the kNN fill (the 10 training digits nearest in the visible pixels, inverse-distance weighted); needs the training split."),
):
    """All restoration models, the kNN fill and the interpolation floor on the same masked test digits."""
    _eval(models, n, mask_frac, json_out, png, setup(device, threads), data_dir, seed,
          card, card_notes, _floats(mask_fracs, "--mask-fracs"), _floats(region_fracs, "--region-fracs"),
          _floats(steps, "--steps"), knn)


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


@study_app.command("restore-basins")
def study_restore_basins(
    models: Optional[Path] = typer.Option(None, help="Folder with the trained models (default: the shipped ones)."),
    model: str = typer.Option("hybrid", help="hybrid or ca: the model whose lattice is clustered."),
    noise: int = typer.Option(100, help="Noise seeds: lattices started from N(0, 1) states."),
    n: int = typer.Option(500, help="Heavily masked test digits started from."),
    mask_frac: float = typer.Option(0.95, help="Fraction of their pixels blanked."),
    steps: int = typer.Option(0, help="Steps to run (0 = 5x the trained steps)."),
    k_max: int = typer.Option(15, help="k-means is fitted for k = 2..K_MAX; the best silhouette names the basins."),
    damage_frac: float = typer.Option(0.3, min=0, max=1, help="Also run every start with this fraction of its cells zeroed mid-run: share ending in the same basin (0 = skip)."),
    json_out: Path = typer.Option(Path("runs/restore-basins.json"), "--json"),
    png: Optional[Path] = typer.Option(Path("runs/restore-basins.png"), help="Figure: each basin's mean image and the states on two principal components."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
):
    """Attractor basins: cluster the final lattice states (k-means) started from noise seeds,
    the blank input and heavily masked digits; number of basins, purity by digit, a figure."""
    from localrules.studies.restore_basins import basins

    if model not in ("hybrid", "ca"):
        raise typer.BadParameter(f"--model must be hybrid or ca (a lattice), not {model!r}")
    dev = setup(device, threads)
    restorers, classifier = _load_models(models, dev)
    images, labels = _test_digits(n, data_dir, dev)
    res, arrays = basins(restorers[model], classifier, images, labels, noise, mask_frac, steps or None, k_max, seed,
                         damage_frac)
    res["model"] = model
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(res, indent=1))
    typer.echo(f"{model}: {res['n_basins']} basins after {res['steps']} steps; purity by the classifier's "
               f"reading {res['purity_by_classifier']:.3f}, by the true digit (masked starts) "
               f"{res['purity_by_true_label_masked']:.3f}; noise seeds read as {res['digits_read_from_noise']}")
    for i, b in enumerate(res["basins"]):
        typer.echo(f"  basin {i}: {b['size']} states, digit {b['digit']} ({b['digit_share']:.0%}), from {b['from']}")
    if "damage" in res:
        d = res["damage"]
        typer.echo(f"  {d['frac']:.0%} of the cells zeroed mid-run: {d['same_basin']:.1%} end in the same basin, "
                   f"{d['same_digit']:.1%} read as the same digit; by start: "
                   + ", ".join(f"{k} {v['same_basin']:.1%}" for k, v in d["by_start"].items()))
    if png:
        from localrules.viz.plots import plot_basins

        png.parent.mkdir(parents=True, exist_ok=True)
        plot_basins(res, arrays, png)
        typer.echo(f"figure: {png}")
