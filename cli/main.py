"""The ``localrules`` command line (typer): parses options, builds a Config, calls the library.

    localrules run   mnist-selfclassify | metanca      train (or --pretrained: evaluate the shipped model)
    localrules eval  mnist-selfclassify                the paper's evaluation protocol
    localrules run   restore                           train a restoration model (or --pretrained)
    localrules eval  restore                           all restoration models on the same masked digits
    localrules study heatmap | architectures | datasets | zeroout | stability | transfer   MetaNCA; restore-damage
    localrules bench mnist-selfclassify | metanca      our engines against dense references
    localrules demo  mnist-selfclassify | restore      the interactive playground in the browser
    localrules export MODEL --format onnx --out FILE   a model's step as ONNX (the export extra)
"""

import os

import typer

from . import demo, metanca, plugins, restore, selfclassify  # noqa: F401  (register the commands)
from .bench import bench
from .export import export
from .common import eval_app, run_app, study_app
from .helpstyle import VerbOrder, tidy
from .ranges import apply_ranges

app = typer.Typer(
    help="Learn local rules: cells that share one small rule, see only their neighbours, "
    "and still reach a global result.",
    no_args_is_help=True,
    add_completion=False,
    cls=VerbOrder,
)


@app.callback()
def main(quiet: bool = typer.Option(False, "--quiet", help="No progress output (also LOCALRULES_QUIET=1). On a terminal it is a bar; in a pipe, one plain line per 10 % or 30 s.")):
    # the group's help text is the Typer(help=...) above
    if quiet:
        os.environ["LOCALRULES_QUIET"] = "1"  # worker processes inherit it


plugins.register(run_app)  # `localrules run NAME` for tasks that other packages install
app.add_typer(run_app, name="run")
app.add_typer(eval_app, name="eval")
app.add_typer(study_app, name="study")
app.command("demo")(demo.demo)
app.command("bench")(bench)
app.command("export")(export)
apply_ranges(app)
tidy(app)


def cli(argv: list[str] | None = None) -> None:
    """Console entry point: a failure ends with one clear line, not a traceback (``--debug`` or
    LOCALRULES_DEBUG=1 shows it; see :mod:`.errors`). ``localrules run ... --nproc N`` starts the
    command in N processes (localrules.train.launch); under torchrun only rank 0 prints."""
    import sys

    from .errors import run

    argv = list(sys.argv[1:] if argv is None else argv)
    if int(os.environ.get("RANK", "0")) > 0 and os.environ.get("LOCALRULES_ALL_RANKS_PRINT", "") in ("", "0"):
        sys.stdout = open(os.devnull, "w")
    if any(a == "--nproc" or a.startswith("--nproc=") for a in argv):
        from localrules.train.launch import launch, split_nproc

        def launched(args, prog_name):
            n, rest = split_nproc(argv)
            return launch(n, rest) if n > 1 else app(rest, prog_name=prog_name)

        return run(launched, argv)
    run(app, argv)
