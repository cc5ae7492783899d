"""Evaluate a self-classifying checkpoint: JSON metrics, the paper's plots and a GIF."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from localrules.studies.curves import SUMMARY, selfclassify_curves
from localrules.tasks import mnist_selfclassify as ms
from localrules.viz.labels import adam_label
from localrules.viz.plots import plot_curves, plot_magnitudes
from localrules.viz.video import label_frames_to_gif


def selfclassify_report(
    checkpoint: str | Path,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    out_dir: str | Path | None,
    json_path: str | Path | None = None,
    device: torch.device | str = "cpu",
    noise_std: float | None = None,
    gif_digits: int = 16,
    **curve_kwargs,
) -> dict:
    """Run :func:`selfclassify_curves`; ``noise_std=None`` uses the noise the model trained with.

    Writes ``json_path`` (per-step lists + summary) and, when ``out_dir`` is given,
    ``curves.png``, ``magnitudes.png`` and ``cells.gif`` there.
    """
    model, cfg, meta = ms.load(checkpoint, device)
    noise = cfg.noise_std if noise_std is None else noise_std
    t0 = time.perf_counter()
    res = selfclassify_curves(model, pixels, labels, noise_std=noise,
                              record=gif_digits if out_dir else 0, **curve_kwargs)
    res["seconds"] = time.perf_counter() - t0
    res["checkpoint"] = str(checkpoint)
    res["device"] = str(device)
    frames = res.pop("frames", None)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        label = curve_label(checkpoint, cfg, noise)
        res["plots"] = [str(plot_curves(res, out / "curves.png", label)),
                        str(plot_magnitudes(res, out / "magnitudes.png"))]
        if frames is not None:
            res["plots"].append(str(label_frames_to_gif(frames, out / "cells.gif",
                                                                   mutate_at=res.get("mutate_at"))))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(res, indent=1))
    return res


def curve_label(checkpoint, cfg, eval_noise: float) -> str:
    """The legend of a checkpoint's curves: its name, its own training loss and noise, and the
    evaluation noise when it differs, e.g. ``mnist-selfclassify-ce (ce, noise 0)``."""
    path = Path(checkpoint)
    name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
    text = f"{name} ({cfg.loss}, noise {cfg.noise_std:g}"
    if eval_noise != cfg.noise_std:
        text += f"; evaluated with noise {eval_noise:g}"
    return text + ")"


PAPER = {  # Randazzo et al. 2020, table of Experiment 2 (percent -> fractions)
    "l2+noise": {"top_accuracy": 0.954, "accuracy_at_200": 0.953, "top_agreement": 0.882, "agreement_at_200": 0.881},
    "l2": {"top_accuracy": 0.950, "accuracy_at_200": 0.947, "top_agreement": 0.855, "agreement_at_200": 0.852},
    "ce": {"top_accuracy": 0.962, "accuracy_at_200": 0.953, "top_agreement": 0.779, "agreement_at_200": 0.662},
}


def training_lines(meta: dict) -> list[str]:
    """Markdown lines for a checkpoint's training record: commands, config, schedule, time, hardware."""
    hw = meta.get("hardware", {})
    cmds = meta.get("commands", [])
    lines = []
    if cmds:
        lines += ["Commands (each `--resume` continued exactly from the last checkpoint):", "", "```"]
        lines += [f"{c['command']}    # from iteration {c['from_iteration']}" for c in cmds] + ["```", ""]
    lines += [f"- config: `{json.dumps(meta.get('task', {}), sort_keys=True)}`",
              f"- schedule: `{json.dumps(meta.get('train', {}), sort_keys=True)}`",
              f"- wall time recorded by the trainer: {meta.get('train_seconds', 0) / 3600:.2f} h",
              f"- hardware: {hw.get('cpu', '?')}, {hw.get('threads', '?')} thread(s), device {hw.get('device', '?')}, "
              f"torch {hw.get('torch', '?')}", ""]
    return lines


def model_card(checkpoint: str | Path, res: dict, title: str, notes: str = "") -> str:
    """Markdown model card from the checkpoint's metadata and an evaluation result."""
    _, cfg, meta = ms.load(checkpoint)
    variant = cfg.loss + ("+noise" if cfg.noise_std else "")
    lines = [f"# {title}", "", f"Self-classifying MNIST NCA, {variant} variant: "
             f"{sum(v.numel() for v in ms.build_model(cfg).parameters()):,} parameters, "
             f"trained {meta.get('iteration', '?')} iterations.", "", "## Training", ""]
    lines += training_lines(meta)
    lines += ["## Evaluation", "", f"`localrules eval mnist-selfclassify` on {res['n_digits']:,} test digits, "
              f"{res['steps']} steps, every digit mutated into another test digit after {res['mutate_at']} "
              f"updates, residual noise std {res['noise_std']} during evaluation, engine `{res['engine']}`; "
              f"counts pooled over all digits; {res['seconds']:.0f} s on {res['device']}.", "",
              "| metric | ours | paper |", "|---|---|---|"]
    paper = PAPER.get(variant, {})
    for k in SUMMARY:
        if k in res:
            step = f" (step {res[k + '_step']})" if k + "_step" in res else ""
            lines.append(f"| {k} | {res[k]:.4f}{step} | {paper[k]:.3f} |" if k in paper else
                         f"| {k} | {res[k]:.4f}{step} | - |")
    if notes:
        lines += ["", "## Notes", "", notes]
    return "\n".join(lines) + "\n"


RESTORE_CLAIMS = {  # the seed text's figures (claims from a blog post, not measurements)
    "hybrid": (26.7, 0.94), "cnn-ae": (24.3, 0.82), "ca": (21.1, 0.64),
}


def restore_card(folder: str | Path, res: dict, notes: str = "") -> str:
    """Markdown model card for the restoration models in ``folder`` and one ``evaluate`` result."""
    from localrules.train.checkpoint import load_model_files

    folder = Path(folder)
    lines = ["# restore: masked-digit restoration models", "",
             f"`localrules eval restore` on {res['n']:,} test digits with {res['mask_frac']:.0%} of the "
             f"pixels blanked (mask seed {res['seed']}, the same masks for every model); PSNR on [0, 1] "
             "images over the whole 28x28 image; digit-ID accuracy by the shipped reference classifier "
             f"(accuracy on the clean digits: {res['classifier_accuracy_on_clean']:.4f}).", "",
             "| model | PSNR (dB) | digit-ID accuracy | parameters | batches (last run) | MFLOP / digit | the text claims |",
             "|---|---|---|---|---|---|---|"]
    for name, row in res["models"].items():
        flops = f"{row['flops_per_sample'] / 1e6:.1f}" if row.get("flops_per_sample") else "-"
        batches = f"{row['batches']:,}" if row.get("batches") is not None else "-"
        claim = RESTORE_CLAIMS.get(name)
        claim = f"{claim[0]} dB / {claim[1]:.2f}" if claim else "-"
        lines.append(f"| {name} | {row['psnr_db']:.2f} | {row['digit_id_accuracy']:.4f} | {row['params']:,} | "
                     f"{batches} | {flops} | {claim} |")
    lines.append("")
    for title, table in (("Other masks (`--mask-fracs`, `--region-fracs`): PSNR (dB) / digit-ID accuracy",
                          res.get("masks")),
                         ("Longer runs (`--steps`, multiples of the trained steps, 70 % masks): PSNR (dB) / "
                          "digit-ID accuracy", res.get("steps"))):
        if table:
            names = list(next(iter(table.values())))
            lines += [title, "", "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            lines += [f"| {key} | " + " | ".join(f"{r[n]['psnr_db']:.2f} / {r[n]['digit_id_accuracy']:.4f}"
                                                 for n in names) + " |" for key, r in table.items()]
            lines.append("")
    for name in (*(n for n in res["models"] if n not in ("knn", "interpolation")), "classifier"):
        if (folder / name / "model.json").is_file():
            _, meta = load_model_files(folder / name / "model")
            lines += [f"## Training: {name}", ""] + training_lines(meta)
    if notes:
        lines += ["## Notes", "", notes]
    return "\n".join(lines) + "\n"


def _meta_archs(cfg) -> str:
    """The meta-training architectures as the card names them."""
    from localrules.tasks import metanca as mn

    archs = [mn.arch_label(a) for a in cfg.archs]
    if not cfg.arch_range:
        return str(archs)
    lo, hi = cfg.arch_range
    draw = " log-uniformly" if cfg.arch_draw == "log" else ""
    return f"the shapes of {archs} with every hidden width drawn{draw} from {lo}..{hi}"


def _architectures_lines(res: dict) -> list[str]:
    """A `study architectures` JSON (named ``--arch`` or ``--random``) as a table of the architectures
    meta-trained on and the ones only evaluated."""
    name = lambda c: c["arch"] if "arch" in c else str(c["hidden"])  # noqa: E731
    adam = all("adam_accuracy" in c for c in res["cells"])
    lines = [f"Architectures (`localrules study architectures`, {res['samples']} networks each, {res['steps']} "
             f"updates; meta-trained on: {', '.join(map(str, res['trained_archs']))}):", "",
             "| architecture | meta-trained on | grown test accuracy |"
             + (f" {adam_label(res['adam_epochs'])} | grown / Adam |" if adam else ""),
             "|---|---|---|" + ("---|---|" if adam else "")]
    for c in res["cells"]:
        row = f"| {name(c)} | {'yes' if c['in_training'] else 'no: only evaluated'} | {c['mean_accuracy']:.4f} |"
        if adam:
            row += f" {c['adam_accuracy']:.4f} | {c['ratio']:.4f} |" if c.get("ratio") is not None else " - | - |"
        lines.append(row)
    return lines


def metanca_card(checkpoint: str | Path, res: dict, studies: dict, notes: str = "") -> str:
    """Markdown model card for a MetaNCA rule: accuracy on its meta-training architectures and
    the summaries of the given studies ({"heatmap": ..., "zeroout": ...} JSON results)."""
    from localrules.tasks import metanca as mn

    rule, cfg, meta = mn.load(checkpoint)
    lines = [f"# MetaNCA rule ({cfg.dataset})", "",
             f"A local rule of {sum(p.numel() for p in rule.parameters()):,} parameters that grows the weights of "
             f"feed-forward task networks; meta-trained on {_meta_archs(cfg)} for "
             f"{meta.get('iteration', '?')} iterations"
             + (f", hidden states bounded to [-{cfg.hidden_clip:g}, {cfg.hidden_clip:g}]" if cfg.hidden_clip else "")
             + ".", "", "## Training", ""] + training_lines(meta)
    lines += ["## Evaluation", "", f"`localrules eval metanca`: {res['samples']} networks per architecture grown "
              f"from random initialisations for {res['steps']} rule updates; test accuracy on the held-out split.",
              ""]
    if res.get("adam_epochs"):
        lines += [f"| architecture | mean test accuracy | std | {adam_label(res['adam_epochs'])} | grown / Adam |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['arch']} | {r['mean_accuracy']:.4f} | {r['std']:.4f} | {r['adam_accuracy']:.4f} | "
                  f"{r['ratio']:.4f} |" for r in res["archs"]]
    else:
        lines += ["| architecture | mean test accuracy | std |", "|---|---|---|"]
        lines += [f"| {r['arch']} | {r['mean_accuracy']:.4f} | {r['std']:.4f} |" for r in res["archs"]]
    hm = studies.get("heatmap")
    if hm:
        lines += ["", f"Architecture generalisation (`localrules study heatmap`, {len(hm['cells'])} architectures "
                  f"[n_in, X, Y, n_out], {hm['samples']} samples each, {hm['steps']} updates): mean over cells "
                  f"**{hm['mean_over_cells']:.4f}**, worst cell **{hm['worst_cell']:.4f}**, best cell "
                  f"{hm['best_cell']:.4f}."]
        if "median_ratio" in hm:
            lines[-1] += (f" {adam_label(hm['adam_epochs'])} averages {hm['adam_mean_over_cells']:.4f}; grown / Adam "
                          f"has median {hm['median_ratio']:.3f} and worst {hm['worst_ratio']:.3f}.")
    arch = studies.get("architectures")
    if arch:
        lines += ["", *_architectures_lines(arch)]
    zo = studies.get("zeroout")
    if zo:
        lines += ["", f"Zero-out (`localrules study zeroout`, {zo['sizes']}, {zo['samples']} networks, a whole layer "
                  f"+ {zo['frac']:.0%} of the other weights zeroed after {zo['zero_out_at']} updates): accuracy "
                  f"before {zo['accuracy_before']:.4f}, lowest after {zo['accuracy_min_after']:.4f}, after "
                  f"{len(zo['accuracy']) - 1 - zo['zero_out_at']} more updates {zo['accuracy_recovered']:.4f}."]
        if "accuracy_best_after" in zo:
            back = zo["updates_to_within_0.02"]
            lines[-1] += (f" Best after {zo['accuracy_best_after']:.4f}; "
                          + (f"back within 0.02 of before after {back} updates." if back else "never back within 0.02."))
            late = zo["accuracy"][zo["zero_out_at"] + 10:]  # [zero_out_at]: just after the damage
            if late:
                low = min(late)
                lines[-1] += (f" From 10 updates after the damage on, the lowest is {low:.4f}: "
                              + ("within" if low >= zo["accuracy_before"] - 0.02 else "not within")
                              + " 0.02 of before at every update.")
    if notes:
        lines += ["", "## Notes", "", notes]
    return "\n".join(lines) + "\n"
