"""``localrules bench``: time our engines against the dense references."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .common import DATA_HELP, DEVICE_HELP, setup


class BenchSystem(str, Enum):
    mnist_selfclassify = "mnist-selfclassify"
    metanca = "metanca"
    restore = "restore"


def _test_pixels(data_dir):
    """The MNIST test digits as (N, 28, 28) floats in [0, 1]."""
    from localrules.data.arrays import to_unit_pixels
    from localrules.data.mnist import load_mnist

    x, _ = load_mnist("test", data_dir)
    return to_unit_pixels(x)


def bench(
    system: BenchSystem = typer.Argument(BenchSystem.mnist_selfclassify, help="Which engine to benchmark."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report here."),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes: checks that it runs, not a measurement."),
    repeats: int = typer.Option(3, help="Timed repetitions (best is reported)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_HELP),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", show_default="on, except --quick on a CPU", help="Also time the engine's variants, each checked against the eager engine first: compiled steps (on CUDA also recorded as CUDA graphs) and, for restore, the NCHW layout; compiling takes a minute or more on a CPU."),
):
    """Same weights and inputs through our engine and a plain dense PyTorch reference: checks they
    agree, then reports train_speedup, eval_speedup, cell-steps/s and GFLOP/s; with --compile
    (default) the same for the compiled (and on CUDA graph-captured) engine against the eager one."""
    from localrules.bench.run import accelerated_modes, bench_metanca, bench_restore, bench_selfclassify

    dev = setup(device, threads)
    if compile is None:  # a --quick check on a CPU would spend most of its time compiling
        compile = not (quick and dev.type == "cpu")
    modes = accelerated_modes(dev, system.value) if compile else ()

    def write(res: dict) -> None:  # also before each variant: a bench cut off while compiling keeps its rows
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(res, indent=1))

    if system is BenchSystem.metanca:
        kw = dict(sizes=(20, 8, 6, 3), samples=2, steps=2, data_batch=8, repeats=1) if quick else {}
        res = bench_metanca(dev, **{"repeats": repeats, "modes": modes, "report": write, **kw})
    elif system is BenchSystem.restore:
        kw = dict(batch=4, eval_digits=8, eval_batch=4, repeats=1) if quick else {}
        res = bench_restore(_test_pixels(data_dir), dev, **{"repeats": repeats, "modes": modes, "report": write, **kw})
    else:
        kw = dict(batch=4, steps=3, eval_digits=8, eval_steps=3, eval_batch=4, repeats=1) if quick else {}
        res = bench_selfclassify(_test_pixels(data_dir), dev, **{"repeats": repeats, "modes": modes, "report": write, **kw})
    write(res)
    t, e = res["train"], res["eval"]
    typer.echo(f"{res['system']} on {res['machine']['cpu']} ({res['machine']['torch_threads']} threads, "
               f"{dev}): agree={res['agreement']['ok']}")
    for name, rows in (("train", t), ("eval", e)):
        typer.echo(f"  {name}: engine {rows['engine']['seconds']:.4f} s ({rows['engine']['cell_steps_per_s']:.3g} "
                   f"cell-steps/s), reference {rows['reference']['seconds']:.4f} s -> "
                   f"{res[name + '_speedup']:.2f}x")
        for mode in modes:
            if mode in rows:
                typer.echo(f"    {mode}: {rows[mode]['seconds']:.4f} s ({rows[mode]['gflop_per_s']:.3g} GFLOP/s) -> "
                           f"{res[f'{mode}_{name}_speedup']:.2f}x the eager engine")
    for mode in modes:
        agree = res[f"agreement_{mode}"]
        typer.echo(f"  {mode} agrees with the eager engine: {agree['ok']}" + (f" ({agree['error']})" if "error" in agree else ""))
    if not (res["agreement"]["ok"] and all(res[f"agreement_{m}"]["ok"] for m in modes)):
        raise typer.Exit(1)
