"""The plan of the next GPU slot: what `scripts/gpu-job` trains and measures, as data.

This file is rewritten for each slot; the runner (scripts/gpu_runner.py) is not. It holds only
tables (no imports, no logic), so it needs no parser and reads the same on every Python.

In every command, "{root}" stands for the checkout's root and the element "{size}" for the
stage's ``size["full"]`` (a GPU slot) or ``size["smoke"]`` (``--smoke``: the same command with
tiny sizes); a command without "{size}" gets it at its end. The runner adds --out, --device,
--data-dir and --minutes (studies: --json, --png, --device, --data-dir) itself.

STAGES, the trainings, in order (``--sequential`` runs them in this order), each a dict:
  name        the run folder under the work folder, runs/gpu/NAME
  archive     the archive of ARCHIVES it travels home in (the archives' contents derive from this)
  share       with --sequential: its share of the training time left when it starts (renormalised
              over the stages still to run); all at once (the default), every stage gets all of it
  args, size  the command (`python -m localrules ARGS`)
  keep_state  whether its train_state.pt may travel home for an exact resume in the next slot
  continue    what the next slot continues: "state" (an earlier slot's run folder with a
              train_state.pt resumes with --resume; for a command with --init-model, only if that
              run started from a checkpoint too) or "rule" (keep_state False: the stage starts
              with --init-rule from the last slot's model.safetensors when its model.json's
              "task" has every item of ``rule_if``, else from ``rule_default``)
  why         where the recipe and the share come from

STUDIES run beside the trainings (not with --sequential), into work/studies/NAME.json (+ .png);
each resumes through its JSON, so a cut-off study goes on in the next slot.

ARCHIVES: the archive groups OUT gets, each with the most returned files it may take (OUT holds
at most 8 files of at most 16 MiB: the log and these). SETUP_ARCHIVE takes the setup/ folder
(the log of the checks, the bench JSONs) and the studies/ folder.

BENCHES: the systems `localrules bench` measures before the trainings (a bench whose paths
agreed in an earlier slot is not repeated).
"""

# the restorers: the pool recipe as a fine-tune of the shipped models (on the CPU, 3,000 pool
# batches from the shipped plain hybrid beat 6,000 from scratch by 2 dB at 70 % masks). The
# lattice models draw 8-56 CA steps per batch, so that the restored digit holds for 5x the 10
# steps they are run for (the hybrid on the CPU: 8-16 lost 0.73 dB at 5x; after 2,000 batches on
# 8-32 and 1,000 on 8-56, 0.27). The CNN auto-encoder is not trained here: it has the most batches
# (32,000 against the hybrid's 25,000), and issue 18 compares the restorers at equal batch counts.
RESTORE_WHY = ("the pool recipe as a fine-tune of the shipped model, 20,000 batches on 8-56 CA steps "
               "(5x the 10 steps it is run for); the CNN auto-encoder, ahead in batches, is not trained")

STAGES = [
    {
        "name": "metanca",
        "archive": "1-setup-metanca",
        "share": 0.40,
        "args": ["run", "metanca", "--dataset", "mnist", "--arch", "784,10,10,10", "--arch", "784,50,30,10",
                 "--arch", "784,100,100,10", "--arch-range", "10,100", "--hidden-clip", "2.5", "--lr", "2e-4",
                 "--data-conditioned", "--steps-min", "4", "--steps-max", "8", "--zero-out-prob", "0.2",
                 "{size}"],
        "size": {"full": ["--iterations", "100000", "--samples", "8"],
                 "smoke": ["--iterations", "2", "--samples", "2", "--pool-size", "2"]},
        "keep_state": False,
        "continue": "rule",
        "rule_if": {"data_conditioned": True},
        "rule_default": "{root}/localrules/pretrained/metanca-mnist-dc.safetensors",
        "why": "the data-conditioned MetaNCA MNIST rule, from the last slot's rule if data-conditioned "
               "(an older data-free rule would restart it from the data-free recipe), else the shipped "
               "metanca-mnist-dc. Its state (a pool of grown networks, hundreds of MB on MNIST) never "
               "travels. Share from the first slot (H200): MetaNCA gains most per second (0.036 s per "
               "iteration, 47x the CPU)",
    },
    {
        "name": "hybrid",
        "archive": "2-hybrid",
        "share": 0.25,
        "args": ["run", "restore", "--model", "hybrid", "--init-model",
                 "{root}/localrules/pretrained/restore/hybrid/model.safetensors", "--lr", "3e-4", "{size}",
                 "--steps-max", "56"],
        "size": {"full": ["--iterations", "20000"], "smoke": ["--iterations", "2"]},
        "keep_state": True,
        "continue": "state",
        "why": RESTORE_WHY + ". Share: the hybrid trains at 0.038 s per batch on the H200 (8-16 steps; "
               "0.11-0.12 on 8-56)",
    },
    {
        "name": "ca",
        "archive": "4-ca-selfclassify",
        "share": 0.15,
        "args": ["run", "restore", "--model", "ca", "--init-model",
                 "{root}/localrules/pretrained/restore/ca/model.safetensors", "--lr", "3e-4", "{size}",
                 "--steps-max", "56"],
        "size": {"full": ["--iterations", "20000"], "smoke": ["--iterations", "2"]},
        "keep_state": True,
        "continue": "state",
        "why": RESTORE_WHY + " (the CA alone)",
    },
    {
        "name": "selfclassify",
        "archive": "4-ca-selfclassify",
        "share": 0.20,
        "args": ["run", "mnist-selfclassify", "--loss", "l2", "--noise", "0.02", "--augment", "--init-model",
                 "{root}/localrules/pretrained/mnist-selfclassify-robust.safetensors", "--lr", "1e-4",
                 "--milestones", "20000", "{size}"],
        "size": {"full": ["--iterations", "30000"],
                 "smoke": ["--iterations", "2", "--batch-size", "4", "--pool-size", "8", "--steps", "2"]},
        "keep_state": True,
        "continue": "state",
        "why": "the robust self-classifier goes on from the shipped robust model (the paper's model "
               "fine-tuned 42,000 iterations with --augment): L2 + residual noise, lr 1e-4, 30,000 "
               "iterations, lr 1e-5 from 20,000; from scratch, one slot's minute reached 0.12",
    },
]

# issue 17's heatmap at its own protocol, 100 networks per cell (hours on a CPU core), for each
# shipped MetaNCA rule
STUDIES = [
    {
        "name": "heatmap-metanca-mnist",
        "args": ["study", "heatmap", "--checkpoint", "{root}/localrules/pretrained/metanca-mnist.safetensors",
                 "{size}"],
        "size": {"full": ["--samples", "100"],
                 "smoke": ["--samples", "1", "--x", "10", "--y", "10", "--adam-epochs", "0"]},
        "why": "issue 17's heatmap at its protocol (100 networks per cell) of the shipped metanca-mnist",
    },
    {
        "name": "heatmap-metanca-mnist-dc",
        "args": ["study", "heatmap", "--checkpoint", "{root}/localrules/pretrained/metanca-mnist-dc.safetensors",
                 "{size}"],
        "size": {"full": ["--samples", "100"],
                 "smoke": ["--samples", "1", "--x", "10", "--y", "10", "--adam-epochs", "0"]},
        "why": "issue 17's heatmap at its protocol (100 networks per cell) of the shipped metanca-mnist-dc",
    },
]

# 7 files + the log = 8
ARCHIVES = {
    "1-setup-metanca": {"files": 1, "why": "setup, studies and MetaNCA's rule: small (its state never travels)"},
    "2-hybrid": {"files": 3, "why": "the hybrid's train_state.pt, for an exact resume"},
    "4-ca-selfclassify": {"files": 1, "why": "a group larger than its files travels without its train_state.pt"},
}
SETUP_ARCHIVE = "1-setup-metanca"

BENCHES = ["mnist-selfclassify", "metanca", "restore"]
