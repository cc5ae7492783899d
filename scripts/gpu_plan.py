"""The plan of the next GPU slot: what `scripts/gpu-job` trains and measures, as data.

This file is rewritten for each slot; the runner (scripts/gpu_runner.py) is not. It holds only
tables (no imports, no logic), so it needs no parser and reads the same on every Python.

In every command, "{root}" stands for the checkout's root and the element "{size}" for the
stage's ``size["full"]`` (a GPU slot) or ``size["smoke"]`` (``--smoke``: the same command with
tiny sizes); a command without "{size}" gets it at its end. The runner adds --out, --device,
--data-dir and --minutes (studies: --json, --png, --device, --data-dir) itself.

STAGES, the trainings, in the order they run, each a dict:
  name        the run folder under the work folder, runs/gpu/NAME
  archive     the archive of ARCHIVES it travels home in (the archives' contents derive from this)
  share       its share of the time left when it starts, renormalised over the stages and studies
              still to run (the runs go one after another in one process); with --processes
              (all at once) every stage gets all of it
  args, size  the command (`python -m localrules ARGS`)
  keep_state  whether its train_state.pt may travel home for an exact resume in the next slot
  continue    what the next slot continues: "state" (an earlier slot's run folder with a
              train_state.pt resumes with --resume; for a command with --init-model, only if that
              run started from a checkpoint too) or "rule" (keep_state False: the stage starts
              with --init-rule from the last slot's model.safetensors when its model.json's
              "task" has every item of ``rule_if``, else from ``rule_default``)
  why         where the recipe and the share come from

STUDIES run after the trainings (with --processes: beside them), each with its ``share`` as a
stage's, into work/studies/NAME.json (+ .png); each resumes through its JSON, so a cut-off study
goes on in the next slot.

ARCHIVES: the archive groups OUT gets, each with the most returned files it may take (OUT holds
at most 8 files of at most 16 MiB: the log and these). SETUP_ARCHIVE takes the setup/ folder
(the log of the checks, the bench JSONs) and the studies/ folder.

BENCHES: the systems `localrules bench` measures before the trainings (a bench whose paths
agreed in an earlier slot is not repeated).
"""

# issue 39: the restorers compared at equal batches, from scratch, on the same pool recipe: the
# hybrid with the mask as a per-cell channel and the visible pixels kept (on the CPU at 300 batches
# +2.40 dB over the plain hybrid at 70 % masks, still 2.06 dB under the CNN auto-encoder and 4.09
# under the U-Net; a CA of 32 channels with a 64-unit rule layer added +0.91 dB more, the gate
# reading 4 pooled maps and a clamped linear read-out nothing: docs/restore.md, "Screening"),
# the U-Net of the hybrid's size and the CNN auto-encoder. The same batch count
# for all three (4,000 fits a slot shared four ways); each continues from its state next slot.
EQUAL_WHY = ("issue 39's equal-batch comparison from scratch (docs/restore.md, strong baselines): "
             "every restorer the same 4,000 pool batches, continued from its state in the next slot")

RESTORE_SIZE = {"full": ["--iterations", "4000"], "smoke": ["--iterations", "2"]}

STAGES = [
    {
        "name": "metanca-depth",
        "archive": "1-setup-metanca",
        "share": 0.27,
        "args": ["run", "metanca", "--dataset", "mnist", "--arch", "784,10,10", "--arch", "784,10,10,10",
                 "--arch", "784,10,10,10,10", "--arch", "784,10,10,10,10,10", "--arch-range", "5,300",
                 "--arch-draw", "log", "--arch-pools", "8", "--layer-code", "role", "--hidden-clip", "2.5", "--lr", "2e-4",
                 "--steps-min", "4", "--steps-max", "8", "--zero-out-prob", "0.2", "{size}"],
        "size": {"full": ["--iterations", "100000", "--samples", "8"],
                 "smoke": ["--iterations", "2", "--samples", "2", "--pool-size", "2"]},
        "keep_state": False,
        "continue": "rule",
        "rule_if": {"layer_code": "role"},
        "rule_default": "{root}/resume/metanca-depth/model.safetensors",
        "why": "issue 38's depth curriculum (1-4 hidden layers, widths drawn log-uniformly from 5-300, the "
               "role layer code) from the CPU run's rule (resume/metanca-depth: 2,852 iterations on widths "
               "5..100 took the depth x width grid from median grown / Adam 0.166 to 0.923; 1,777 more with "
               "--arch-draw log, the last 524 at lr 5e-5, to median 0.967 / worst 0.913 on widths 10-300 "
               "(300 grown with --wrap 100), 5-unit layers 0.63-0.82 of Adam); MetaNCA gains most per second on a GPU "
               "(the shipped rule's recipe: 0.036 s per iteration on an H200; this one 2.9 s on a CPU core). Its pools never travel",
    },
    {
        "name": "hybrid-mk",
        "archive": "2-hybrid",
        "share": 0.21,
        "args": ["run", "restore", "--model", "hybrid", "--mask-channel", "--keep-visible", "--gate-writes", "4",
                 "--gate-hidden", "512", "--lr", "3e-3", "{size}"],
        "size": RESTORE_SIZE,
        "keep_state": True,
        "continue": "state",
        "why": EQUAL_WHY + " (the hybrid with --mask-channel --keep-visible, the gate writing 4 maps through "
                           "512 units, lr 3e-3: the best of the CPU screening at 300 batches, 18.29 dB on 500 "
                           "digits at 70 %, and 20.88 dB on the full test set after 3,000 batches; the larger CA "
                           "--channels 32 --rule-hidden 64 with it gave 17.26, without the gate's dropout 17.98: "
                           "docs/restore.md, 'Screening')",
    },
    {
        "name": "unet",
        "archive": "3-baselines",
        "share": 0.17,
        "args": ["run", "restore", "--model", "unet", "{size}"],
        "size": RESTORE_SIZE,
        "keep_state": True,
        "continue": "state",
        "why": EQUAL_WHY + " (the U-Net, 1,326,133 parameters, mask as an input channel)",
    },
    {
        "name": "cnn-ae",
        "archive": "3-baselines",
        "share": 0.13,
        "args": ["run", "restore", "--model", "cnn-ae", "{size}"],
        "size": RESTORE_SIZE,
        "keep_state": True,
        "continue": "state",
        "why": EQUAL_WHY + " (the CNN auto-encoder)",
    },
    {
        "name": "selfclassify-runs",
        "archive": "1-setup-metanca",
        "share": 0.10,
        "args": ["run", "mnist-selfclassify", "--loss", "l2", "--noise", "0.02", "{size}"],
        "size": {"full": ["--runs", "4", "--iterations", "100000"],
                 "smoke": ["--runs", "2", "--iterations", "2", "--batch-size", "2", "--pool-size", "4", "--steps", "2"]},
        "keep_state": True,
        "continue": "state",
        "why": "issue 40's batched runs: the paper's L2 + noise recipe from scratch, 4 seeds as one "
               "batched model (--runs 4; their states, about 9 MB, fit the setup archive's file); its "
               "utilisation line says what 4 runs per launch cost against the single "
               "self-classifier's 0.024-0.029 s per iteration in the earlier slots",
    },
    {
        "name": "metanca-cnn",
        "archive": "1-setup-metanca",
        "share": 0.12,
        "args": ["run", "metanca", "--dataset", "mnist", "--arch", "conv:8,16", "--arch", "conv:8,res,16",
                 "--arch", "784,50,30,10", "--hidden-clip", "2.5", "--steps-min", "10", "--steps-max", "20",
                 "--lr", "5e-4", "{size}"],
        "size": {"full": ["--iterations", "100000", "--samples", "16", "--data-batch", "512"],
                 "smoke": ["--iterations", "2", "--samples", "2", "--pool-size", "2", "--data-batch", "16"]},
        "keep_state": False,
        "continue": "rule",
        "rule_if": {"steps_min": 10, "hidden_clip": 2.5},
        "rule_default": "{root}/resume/metanca-cnn/model.safetensors",
        "why": "issue 38's convolutional task networks: the CPU rule (resume/metanca-cnn, 2,807 iterations: "
               "conv:8,16 0.9428 = 1.004 of Adam one epoch, conv:8,res,16 0.9488 = 0.984) forgot MLPs "
               "(784,50,30,10: 0.093), so the slot continues it with that MLP in the pool too, at 16 "
               "networks and 512-digit batches per iteration",
    },
]

# none this slot: issue 17's heatmaps of both shipped MetaNCA rules at 100 networks per cell were
# measured in the third and again in the fourth slot (the same numbers; docs/gpu-slots.md). A study
# is {"name", "share", "args", "size", "why"} like a stage.
STUDIES = []

# 7 files + the log = 8
ARCHIVES = {
    "1-setup-metanca": {"files": 1, "why": "setup, studies, MetaNCA's rule (its state never travels) and the "
                                           "batched self-classifier runs: small"},
    "2-hybrid": {"files": 3, "why": "the hybrid's train_state.pt, for an exact resume"},
    "3-baselines": {"files": 3, "why": "the U-Net's and the CNN auto-encoder's states, for an exact resume"},
}
SETUP_ARCHIVE = "1-setup-metanca"

BENCHES = ["mnist-selfclassify", "metanca", "restore"]
