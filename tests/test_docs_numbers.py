"""The figures that README.md and the docs pages quote, held to the JSON files beside the models.

Faults caught: a figure typed by hand that disagrees with the measurement (the README once said
0.9466 for the shipped L2 + noise model's accuracy after 400 steps, where its eval JSON says
0.9486), a figure left behind when a model is retrained and its JSON rewritten, and a table row
edited or reordered by hand. It does not check figures that no JSON holds (the damage drops of
the shipped restorers, the studies measured by hand): those live in the model cards.

How: each check is a piece of a page written as the page shows it, with every figure a format
field that names its JSON file (an alias from ``SOURCES``), its key path and its rounding, e.g.
``accuracy {l2noise[accuracy_at_200]:.4f}``. The test fills the fields from the JSON files and
asserts that the filled text occurs on the page, word for word; line breaks count as spaces and
``**`` (bold) is ignored.
"""

import json
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRE = "localrules/pretrained/"

SOURCES = {  # alias: the JSON file, relative to the repository root
    "l2noise": PRE + "mnist-selfclassify-l2noise.eval.json",
    "ce": PRE + "mnist-selfclassify-ce.eval.json",
    "robust": PRE + "mnist-selfclassify-robust.eval.json",
    "mix": PRE + "mnist-selfclassify-robust.mix.json",
    "meta": PRE + "metanca-mnist.eval.json",
    "dc": PRE + "metanca-mnist-dc.eval.json",
    "dcmap": PRE + "metanca-mnist-dc.heatmap.json",
    "rel": PRE + "metanca-mnist-relative.eval.json",
    "wide": PRE + "metanca-mnist-relative.wide.json",
    "wwrap": "docs/metanca-arch/wide-shipped-wrap100.json",
    "windex": "docs/metanca-arch/wide-shipped-index.json",
    "restore": PRE + "restore/eval.json",
    "equal": "docs/restore-equal-batches.json",
    "screen": "docs/restore-issue39-screen.json",
    "w4": "docs/restore-equal-batches-w4.json",
    "h5k": "docs/restore-hybrid-w4-5k.json",
    "dws": "docs/metanca-arch/depth-width-shipped.json",
    "dwc": "docs/metanca-arch/depth-width-curriculum341.json",
    "dwc2": "docs/metanca-arch/depth-width-curriculum2448.json",
    "ac2": "docs/metanca-arch/architectures-curriculum2448.json",
    "w300": "docs/metanca-arch/depth-width-curriculum2448-w300.json",
    "dwl": "docs/metanca-arch/depth-width-curriculum-log1250.json",
    "dwlw": "docs/metanca-arch/depth-width-curriculum-log1250-w300-wrap100.json",
    "dsw": "docs/metanca-arch/depth-width-shipped-wrap100.json",
    "dwf": "docs/metanca-arch/depth-width-curriculum-log1777-wrap100.json",
    "acf": "docs/metanca-arch/architectures-curriculum-log1777-wrap100.json",
    "dsi": "docs/metanca-arch/depth-width-shipped-w300-400.json",
    "ds": "docs/metanca-arch/datasets.json",
    "cnn0": "docs/metanca-arch/cnn-shipped.json",
    "cnn": "docs/metanca-arch/cnn-cpu.json",
    "zcnn": "docs/metanca-arch/zeroout-cnn.json",
}


WIDE_GROUPS = {  # the cell groups of an X x Y heatmap over 5..200 that docs/metanca.md's wide table reports
    "wide": lambda x, y: max(x, y) > 100 and min(x, y) >= 10,
    "in_range": lambda x, y: max(x, y) <= 100 and min(x, y) >= 10,
    "five": lambda x, y: min(x, y) < 10,
    "both150": lambda x, y: min(x, y) >= 150,
}


def wide_groups(heatmap: dict) -> dict:
    """{group: {"mean": .., "worst": ..}} of a wide heatmap's cells."""
    out = {}
    for name, keep in WIDE_GROUPS.items():
        accs = [c["mean_accuracy"] for c in heatmap["cells"] if keep(c["x"], c["y"])]
        out[name] = {"mean": sum(accs) / len(accs), "worst": min(accs)}
    return out


def wide_row(src: str) -> str:
    """A row of docs/metanca.md's wide table: "| mean / worst | mean / worst | mean / worst | mean / worst |"."""
    return "| " + " | ".join(f"{{derived[{src}][{g}][mean]:.4f}} / {{derived[{src}][{g}][worst]:.4f}}"
                             for g in WIDE_GROUPS) + " |"


def derived(src: dict) -> dict:
    """Figures the pages quote that are computed from the JSON files, not stored in them."""
    wide = [c for c in src["wide"]["cells"] if max(c["x"], c["y"]) > 100 and min(c["x"], c["y"]) >= 10]
    eq = src["equal"]["eval"]["models"]
    # the depth rule's grid with its 300 column grown with the wrapped code (widths up to 100 read the index code)
    wrapped_grid = [c for c in src["dwl"]["cells"] if c["width"] != 300] + src["dwlw"]["cells"]
    ratios = {k: sorted(c["ratio"] for c in wrapped_grid if c["width"] >= lo) for k, lo in (("w10", 10), ("all", 1))}
    ratios["final_w10"] = sorted(c["ratio"] for c in src["dwf"]["cells"] if c["width"] >= 10)
    return {
        **{f"grid_{k}": {"median": statistics.median(r), "worst": r[0], "n95": sum(v >= 0.95 for v in r)}
           for k, r in ratios.items()},
        **{f"groups_{k}": wide_groups(src[k]) for k in ("wide", "wwrap", "windex")},
        "wide_cells": len(wide),  # cells with a layer wider than 100 and none narrower than 10
        "wide_mean": sum(c["mean_accuracy"] for c in wide) / len(wide),
        "equal_lead_db": eq["cnn-ae"]["psnr_db"] - eq["hybrid"]["psnr_db"],  # CNN-AE over hybrid, 70 %
        "equal_lead_id": eq["cnn-ae"]["digit_id_accuracy"] - eq["hybrid"]["digit_id_accuracy"],
        # Adam per epoch count of each datasets row (keys "1", "100": str.format reads [1] as an int)
        **{f"ds_adam{e}": [r["adam"][e] for r in src["ds"]["rows"]] for e in ("1", "100")},
    }


def dw_row(src: str, depth: int, widths: int = 4) -> str:
    """A row of a depth x width table: "| depth | grown / Adam | ..." (``widths`` widths, depth-major)."""
    return f"| {depth} | " + " | ".join(f"{{{src}[cells][{i}][mean_accuracy]:.4f}} / {{{src}[cells][{i}][adam_accuracy]:.4f}}"
                                         for i in range(widths * (depth - 1), widths * depth)) + " |"


def ds_row(i: int) -> str:
    """A row of the datasets table of docs/metanca.md."""
    r = f"{{ds[rows][{i}]"
    return (f"| {r}[dataset]}} | {r}[arch]}} | {r}[grown]:.4f}} | {r}[finetuned]:.4f}} | {{derived[ds_adam1][{i}]:.4f}} | "
            f"{{derived[ds_adam100][{i}]:.4f}} | {r}[logistic_regression]:.4f}} | {r}[chance]:.2f}} |")


def pd(*path: str) -> str:
    """A "PSNR / digit-ID" table cell of a restore JSON: pd("restore", "models", "hybrid")."""
    key = path[0] + "".join(f"[{p}]" for p in path[1:])
    return f"{{{key}[psnr_db]:.2f}} / {{{key}[digit_id_accuracy]:.4f}}"


def arch(src: str, i: int) -> str:
    """The mean test accuracy of eval metanca's i-th architecture."""
    return f"{{{src}[archs][{i}][mean_accuracy]:.4f}}"


RESTORE_MODELS = ("hybrid", "ca", "cnn-ae", "unet", "knn", "interpolation")
MASK_ROWS = {"50 % of pixels": "pixels-0.5", "85 % of pixels": "pixels-0.85", "90 % of pixels": "pixels-0.9",
             "a square of 25 % of the image": "region-0.25", "a square of 50 %": "region-0.5"}
EQUAL_ROWS = {"70 % of pixels": "pixels-0.7", "50 % of pixels": "pixels-0.5", "90 % of pixels": "pixels-0.9",
              "a square of 25 %": "region-0.25", "a square of 50 %": "region-0.5"}

CHECKS = [
    # README.md: the headline figure of each system
    ("README.md", "reaches accuracy {l2noise[accuracy_at_200]:.4f} and agreement "
                  "{l2noise[agreement_at_200]:.4f} after 200 steps on the full test set"),
    ("README.md", "[784, 50, 30, 10] networks grown by the shipped MNIST rule reach "
                  "{meta[archs][1][mean_accuracy]:.4f} test accuracy (Adam after one epoch: "
                  "{meta[archs][1][adam_accuracy]:.4f})"),
    ("README.md", "layers wider than it was trained on (56 architectures with a layer of 110..200 units: "
                  "{derived[groups_wwrap][wide][mean]:.4f} on average)"),
    ("README.md", "told which pixels are blanked, restores them at {restore[models][hybrid][psnr_db]:.2f} dB PSNR / "
                  "{restore[models][hybrid][digit_id_accuracy]:.4f} digit-ID accuracy"),
    ("README.md", "(the CNN auto-encoder baseline: {restore[models][cnn-ae][psnr_db]:.2f} dB;"),
    ("README.md", "a U-Net of its size, 3,000 batches: {restore[models][unet][psnr_db]:.2f} dB;"),

    # docs/selfclassify.md: the shipped models, the robust table, digits in pieces
    ("docs/selfclassify.md", "| {l2noise[accuracy_at_200]:.4f} / {l2noise[agreement_at_200]:.4f} | "
                             "{l2noise[accuracy_at_400]:.4f} / {l2noise[agreement_at_400]:.4f} | "
                             "{mix[paper_model][accuracy_at_200]:.4f} / {mix[paper_model][agreement_at_200]:.4f} |"),
    ("docs/selfclassify.md", "| cross-entropy (100k iterations) | {ce[accuracy_at_200]:.4f} / {ce[agreement_at_200]:.4f} | "
                             "{ce[accuracy_at_400]:.4f} / {ce[agreement_at_400]:.4f} |"),
    ("docs/selfclassify.md", "| {robust[accuracy_at_200]:.4f} / {robust[agreement_at_200]:.4f} | "
                             "{robust[accuracy_at_400]:.4f} / {robust[agreement_at_400]:.4f} | "
                             "{mix[robust][accuracy_at_200]:.4f} / {mix[robust][agreement_at_200]:.4f} |"),
    ("docs/selfclassify.md", "(with noise: {l2noise[accuracy_at_200]:.4f} / {l2noise[agreement_at_200]:.4f}, "
                             "{l2noise[accuracy_at_400]:.4f})"),
    ("docs/selfclassify.md", "| robust | {mix[robust][accuracy_at_200]:.4f} / {mix[robust][agreement_at_200]:.4f} | "
                             "{robust[accuracy_at_200]:.4f} / {robust[agreement_at_200]:.4f} |"),
    ("docs/selfclassify.md", "| paper (L2 + noise) | {mix[paper_model][accuracy_at_200]:.4f} / "
                             "{mix[paper_model][agreement_at_200]:.4f} | "
                             "{l2noise[accuracy_at_200]:.4f} / {l2noise[agreement_at_200]:.4f} |"),
    ("docs/selfclassify.md", "| robust, random mix | {mix[robust][connected_at_200]:.4f} | "
                             "{mix[robust][agreement_connected_at_200]:.4f} | {mix[robust][agreement_at_200]:.4f} |"),
    ("docs/selfclassify.md", "| robust, plain | {robust[connected_at_200]:.4f} | "
                             "{robust[agreement_connected_at_200]:.4f} | {robust[agreement_at_200]:.4f} |"),
    ("docs/selfclassify.md", "| paper, plain | {l2noise[connected_at_200]:.4f} | "
                             "{l2noise[agreement_connected_at_200]:.4f} | {l2noise[agreement_at_200]:.4f} |"),

    # docs/metanca.md: the shipped rules, their rows of the stage table, the heatmaps
    ("docs/metanca.md", f"| {arch('meta', 0)} | {arch('meta', 1)} | {arch('meta', 2)} | 0.9271 / 0.8625 (100 per cell) |"),
    ("docs/metanca.md", f"| {arch('dc', 0)} | {arch('dc', 1)} | {arch('dc', 2)} | "
                        "{dcmap[mean_over_cells]:.4f} / {dcmap[worst_cell]:.4f} (100 per cell) |"),
    ("docs/metanca.md", f"| {arch('rel', 0)} | {arch('rel', 1)} | {arch('rel', 2)} | 0.9022 / 0.7736 (10 per cell) |"),
    ("docs/metanca.md", "| Adam, one epoch | {meta[archs][0][adam_accuracy]:.4f} | {meta[archs][1][adam_accuracy]:.4f} | "
                        "{meta[archs][2][adam_accuracy]:.4f} |"),
    ("docs/metanca.md", "over the {derived[wide_cells]} cells of X, Y in 5..200 with a layer wider than 100 (and none "
                        "narrower than 10) it averages {derived[groups_wwrap][wide][mean]:.4f}, where the relative rule, "
                        "trained for such widths, averages {derived[wide_mean]:.4f} and the default rule with its own "
                        "index code {derived[groups_windex][wide][mean]:.4f}"),
    ("docs/metanca.md", "at depths 1-4, " + " / ".join(f"{{dwlw[cells][{i}][ratio]:.3f}}" for i in range(4)) + " of Adam"),
    ("docs/metanca.md", " / ".join(f"{{dwlw[cells][{i}][mean_accuracy]:.4f}}" for i in range(4)) + " at depths 1-4"),
    ("docs/metanca.md", "widths 10-300 (the issue's grid, 16 cells) median grown / Adam {derived[grid_w10][median]:.3f}, "
                        "worst {derived[grid_w10][worst]:.3f} (depth 4 width 30), {derived[grid_w10][n95]} cells >= 0.95; "
                        "with width 5, 20 cells, median {derived[grid_all][median]:.3f}, worst {derived[grid_all][worst]:.3f}"),
    ("docs/metanca.md", "grow to {dsw[cells][0][mean_accuracy]:.4f} and {dsw[cells][1][mean_accuracy]:.4f}, "
                        "{dsw[cells][0][ratio]:.3f} and {dsw[cells][1][ratio]:.3f} of one Adam epoch (index code, the "
                        "same command without `--wrap`: {dsi[cells][0][mean_accuracy]:.4f} and {dsi[cells][1][mean_accuracy]:.4f};"),
    *[("docs/metanca.md", dw_row("dwf", d, widths=5)) for d in (1, 2, 3, 4)],
    ("docs/metanca.md", "On the issue's grid (widths 10-300, 16 cells) grown / Adam has median {derived[grid_final_w10][median]:.3f} "
                        "({derived[grid_w10][median]:.3f} before the lower rate) and worst {derived[grid_final_w10][worst]:.3f} "
                        "({derived[grid_w10][worst]:.3f}; depth 4 width 30 went {derived[grid_w10][worst]:.3f} -> "
                        "{dwf[cells][17][ratio]:.3f}), and {derived[grid_final_w10][n95]} cells are at >= 0.95 "
                        "({derived[grid_w10][n95]})"),
    ("docs/metanca.md", "5-unit layers: " + " / ".join(f"{{dwf[cells][{5 * i}][ratio]:.3f}}" for i in range(4)) + " of Adam"),
    ("docs/metanca.md", "mean {acf[mean_over_cells]:.4f}, grown / Adam median {acf[median_ratio]:.3f}, worst "
                        "{acf[worst_ratio]:.3f} ([784, 372, 60, 330, 68, 10], {acf[cells][2][mean_accuracy]:.4f} against "
                        "{acf[cells][2][adam_accuracy]:.4f})"),
    ("docs/metanca.md", "| default rule, wrapped code (`--wrap 100`) " + wide_row("groups_wwrap")),
    ("docs/metanca.md", "| default rule, index code (its own) " + wide_row("groups_windex")),
    ("docs/metanca.md", "| relative rule (`metanca-mnist-relative`) " + wide_row("groups_wide")),
    ("docs/metanca.md", f"| **shipped (stage 4, + 3,161 on the CPU)** | {arch('meta', 0)} | {arch('meta', 1)} | {arch('meta', 2)} |"),
    ("docs/metanca.md", f"(`metanca-mnist-dc`) | {arch('dc', 0)} | {arch('dc', 1)} | {arch('dc', 2)} | "
                        "{dcmap[mean_over_cells]:.4f} / {dcmap[worst_cell]:.4f} (100 per cell) |"),
    ("docs/metanca.md", f"(`metanca-mnist-relative`) | {arch('rel', 0)} | {arch('rel', 1)} | {arch('rel', 2)} |"),
    ("docs/metanca.md", "it measures mean {dcmap[mean_over_cells]:.4f}, worst {dcmap[worst_cell]:.4f}, best "
                        "{dcmap[best_cell]:.4f}"),
    ("docs/metanca.md", "grown / Adam after one epoch has median {dcmap[median_ratio]:.3f} and worst {dcmap[worst_ratio]:.3f}"),
    ("docs/metanca.md", "the {derived[wide_cells]} cells with a layer wider than 100 (and none narrower than 10) "
                        "average {derived[wide_mean]:.4f}"),
    *[("docs/metanca.md", dw_row(src, d)) for src in ("dws", "dwc", "dwc2") for d in (1, 2, 3, 4)],
    ("docs/metanca.md", "Mean {dwc2[mean_over_cells]:.4f} (at 404 iterations 0.5991), grown / Adam median "
                        "{dwc2[median_ratio]:.3f} (0.774), worst {dwc2[worst_ratio]:.3f} (0.272)"),
    *[("docs/metanca.md", dw_row("dwl", d, 5)) for d in (1, 2, 3, 4)],
    ("docs/metanca.md", "JSON `docs/metanca-arch/depth-width-curriculum2448-w300.json`): "
                        + " / ".join(f"{{w300[cells][{i}][mean_accuracy]:.4f}}" for i in range(4)) + " at depths 1-4"),
    ("docs/metanca.md", "with the 20 cells, mean {dwl[mean_over_cells]:.4f}, median {dwl[median_ratio]:.3f}, "
                        "worst {dwl[worst_ratio]:.3f}"),
    ("docs/metanca.md", "it averages {ac2[mean_over_cells]:.4f} (at 341 iterations 0.6942, shipped 0.4331), grown / "
                        "Adam median {ac2[median_ratio]:.3f}, worst {ac2[worst_ratio]:.3f}: [784, 5, 72, 10] "
                        "{ac2[cells][1][mean_accuracy]:.4f}"),
    ("docs/metanca.md", "the 3 networks stand at {zcnn[accuracy_before]:.4f}; one whole layer"),
    ("docs/metanca.md", "drop them to {zcnn[accuracy_min_after]:.4f}, and the rule is back within 0.02 after "
                        "{zcnn[updates_to_within_0.02]} updates and at {zcnn[accuracy_recovered]:.4f} after the 40 "
                        "(best {zcnn[accuracy_best_after]:.4f})"),
    *[("docs/metanca.md", "| {cnn[cells][%d][arch]} | {cnn0[cells][%d][mean_accuracy]:.4f} | "
                          "{cnn[cells][%d][mean_accuracy]:.4f} +- {cnn[cells][%d][std]:.4f} | "
                          "{cnn[cells][%d][adam_accuracy]:.4f} | {cnn[cells][%d][ratio]:.4f} |" % ((i,) * 6))
      for i in range(3)],
    ("docs/metanca.md", "Mean over the 16 cells {dws[mean_over_cells]:.4f} (Adam {dws[adam_mean_over_cells]:.4f}), grown / "
                        "Adam median {dws[median_ratio]:.3f}, worst {dws[worst_ratio]:.3f}"),
    ("docs/metanca.md", "Mean {dwc[mean_over_cells]:.4f} (shipped {dws[mean_over_cells]:.4f}), grown / Adam median "
                        "{dwc[median_ratio]:.3f}, worst {dwc[worst_ratio]:.3f}"),
    *[("docs/metanca.md", ds_row(i)) for i in range(4)],

    # docs/restore.md: the shipped models at 70 %, other masks and longer runs, equal batches
    *[("docs/restore.md", f"| {{restore[models][{m}][psnr_db]:.2f}} | {{restore[models][{m}][digit_id_accuracy]:.4f}} |")
      for m in RESTORE_MODELS],
    *[("docs/restore.md", f"| {label} | " + " | ".join(pd("restore", "masks", mask, m) for m in RESTORE_MODELS) + " |")
      for label, mask in MASK_ROWS.items()],
    *[("docs/restore.md", f"| 70 %, {k} the trained steps | {pd('restore', 'steps', k, 'hybrid')} | "
                          f"{pd('restore', 'steps', k, 'ca')} |") for k in ("2x", "5x")],
    *[("docs/restore.md", f"| {label} | " + " | ".join(pd("equal", "eval", "masks", mask, m) for m in RESTORE_MODELS) + " |")
      for label, mask in EQUAL_ROWS.items()],
    ("docs/restore.md", "| 70 %, 2x / 5x the steps | "
                        + " | ".join(f"{{equal[eval][steps][2x][{m}][psnr_db]:.2f}} / {{equal[eval][steps][5x][{m}][psnr_db]:.2f}} dB"
                                     for m in ("hybrid", "ca")) + " |"),
    ("docs/restore.md", "| digit-ID drop under 30 % damage (2,000 digits) | "
                        + " | ".join(f"{{equal[damage][models][{m}][accuracy_drop]:.4f}}" for m in ("hybrid", "ca", "cnn-ae", "unet"))
                        + " |"),
    ("docs/restore.md", "it leads the hybrid by {derived[equal_lead_db]:.2f} dB and {derived[equal_lead_id]:.3f} of digit-ID"),
    # the screened hybrid at 3,000 equal batches: its column of each row
    *[("docs/restore.md", f"| {row} | {{w4[eval][masks][{k}][hybrid][psnr_db]:.2f}} / "
                          f"{{w4[eval][masks][{k}][hybrid][digit_id_accuracy]:.4f}} |")
      for row, k in (("70 % of pixels", "pixels-0.7"), ("50 % of pixels", "pixels-0.5"), ("85 % of pixels", "pixels-0.85"),
                     ("90 % of pixels", "pixels-0.9"), ("a square of 25 %", "region-0.25"), ("a square of 50 %", "region-0.5"))],
    ("docs/restore.md", "| 70 %, 2x / 5x the steps | {w4[eval][steps][2x][hybrid][psnr_db]:.2f} / "
                        "{w4[eval][steps][5x][hybrid][psnr_db]:.2f} dB |"),
    ("docs/restore.md", "| digit-ID drop under 30 % damage (2,000 digits) | {w4[damage][models][hybrid][accuracy_drop]:.4f} |"),
    # the screened hybrid after 5,000 batches: its column (the other columns are the shipped models' tables)
    ("docs/restore.md", "| 70 % of pixels | " + pd("h5k", "eval", "models", "hybrid") + " | "),
    *[("docs/restore.md", f"| {row} | " + pd("h5k", "eval", "masks", key, "hybrid") + " | ")
      for row, key in {"50 % of pixels": "pixels-0.5", "85 % of pixels": "pixels-0.85", "90 % of pixels": "pixels-0.9",
                       "a square of 25 %": "region-0.25", "a square of 50 %": "region-0.5"}.items()],
    ("docs/restore.md", "| 70 %, 2x / 5x the steps | {h5k[eval][steps][2x][hybrid][psnr_db]:.2f} / "
                        "{h5k[eval][steps][5x][hybrid][psnr_db]:.2f} dB |"),
    ("docs/restore.md", "| digit-ID drop under 30 % damage (2,000 digits) | {h5k[damage][models][hybrid][accuracy_drop]:.4f} |"),
    # issue 39's screening table: PSNR and digit-ID of each variant (the plain plain-text row ends)
    *[("docs/restore.md", f"| {{screen[models][{m}][psnr_db]:.2f}} | {{screen[models][{m}][digit_id_accuracy]:.4f}} | "
                          f"{{screen[models][{m}][params]:,}} |") for m in ("mk", "mk-big", "mk-wide", "mk-g4p2", "mk-clamp", "knn",
                                                                      "mk-w4", "mk-lr3", "mk-w4-lr3", "mk-w4-lr10",
                                                                      "unet-lr3", "cnn-ae-lr3", "mk-big-w4-lr3",
                                                                      "mk-w4-lr3-d0", "mk-w4h1024-lr3", "mk-w4-lr3-m50")],
]


def plain(text: str) -> str:
    """Text as compared: no bold markers, every run of white space one space."""
    return " ".join(text.replace("**", "").split())


@pytest.fixture(scope="module")
def sources() -> dict:
    src = {alias: json.loads((ROOT / path).read_text()) for alias, path in SOURCES.items()}
    src["derived"] = derived(src)
    return src


def missing(page_text: str, template: str, sources: dict) -> str | None:
    """The filled template when the page does not show it, else None."""
    filled = plain(template.format(**sources))
    return None if filled in plain(page_text) else filled


@pytest.mark.parametrize("page, template", CHECKS, ids=[f"{p}:{i}" for i, (p, _) in enumerate(CHECKS)])
def test_page_shows_the_json_figures(page, template, sources):
    filled = missing((ROOT / page).read_text(), template, sources)
    assert filled is None, (f"{page} does not show, word for word, what its JSON files say:\n  {filled}\n"
                            "fix the page from the JSON (or the check, if the sentence was reworded)")


def test_every_headline_figure_of_the_readme_is_checked(sources):
    """Every 4-decimal figure and every dB figure with 2 decimals in README.md is one that a check
    fills from a JSON file: a new headline figure cannot be added without its source."""
    checked = " ".join(plain(t.format(**sources)) for p, t in CHECKS if p == "README.md")
    figures = re.findall(r"\b\d\.\d{4}\b|\b\d+\.\d\d(?= dB)", plain((ROOT / "README.md").read_text()))
    assert figures, "no figures found in README.md"
    unchecked = [f for f in figures if f not in checked]
    assert not unchecked, f"README.md figures no check holds to a JSON file: {unchecked}"


def test_a_changed_figure_is_caught(sources):
    """The check is not vacuous: the README with one digit of a headline figure changed fails."""
    text = (ROOT / "README.md").read_text()
    shown = f"{sources['l2noise']['accuracy_at_200']:.4f}"
    assert shown in text
    changed = text.replace(shown, shown[:-1] + str((int(shown[-1]) + 1) % 10))
    assert missing(text, CHECKS[0][1], sources) is None
    assert missing(changed, CHECKS[0][1], sources) is not None


def test_every_page_with_a_headline_table_is_checked():
    pages = {p for p, _ in CHECKS}
    assert pages == {"README.md", "docs/selfclassify.md", "docs/metanca.md", "docs/restore.md"}
