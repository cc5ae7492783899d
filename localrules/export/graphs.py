"""The exportable graphs: one call of each model, with every random draw an input.

Each wrapper calls the library's own code (``NCA.step``, ``CARestorer.forward``, ...), so the
exported graph computes what PyTorch computes:

    SelfClassifyStep(pixels (B, H, W, 1), state (B, H, W, C), fire (B, H, W, 1) bool,
                     noise (B, H, W, C))                  -> state' (B, H, W, C)
        one step on the dense grid (Grid2D): alive = pixels > 0.1, noise ~ N(0, 1) scaled by
        the model's training noise std (the playground's dynamics; pass zeros for none)
    Restoration(masked (B, 28, 28)[, keep (B, 28, 28) bool]) -> restored (B, 28, 28) in [0, 1]
        one full restoration (hybrid, CA, CNN-AE or U-Net; the classifier: logits (B, 10));
        ``keep`` (True = visible) only for a model that reads the mask (``reads_mask``); in
        eval mode a restorer draws nothing at random (its only random draw, the mask, is an input)
    RuleUpdate(state (S, cells, 1 + H), fire (S, cells, 1) bool) -> state' (S, cells, 1 + H)
        one MetaNCA update of the networks of one architecture; the cell code's projection
        U c is computed at export time and stored in the graph; the update is dense (the same
        values as the rule's sparse path)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from localrules.core import NCA, Grid2D


class SelfClassifyStep(nn.Module):
    def __init__(self, model: NCA, noise_std: float):
        super().__init__()
        self.model, self.noise_std = copy.copy(model), float(noise_std)
        self.model.sparse_fire = False  # the same values, without data-dependent shapes

    def forward(self, pixels, state, fire, noise):
        from localrules.tasks.mnist_selfclassify import ALIVE_THRESHOLD

        alive = pixels > ALIVE_THRESHOLD
        return self.model.step(Grid2D(), pixels, state, alive, self.noise_std, fire, noise)


class Restoration(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, masked, keep=None):
        return self.model(masked) if keep is None else self.model(masked, keep=keep)


class RuleUpdate(nn.Module):
    def __init__(self, rule: NCA, topology):
        super().__init__()
        self.rule = copy.copy(rule)
        self.rule.sparse_fire = False  # the same values, without data-dependent shapes
        self.topology = topology
        with torch.no_grad():
            uc = rule.code_projection(topology)
        self.register_buffer("uc", uc)

    def forward(self, state, fire):
        return self.rule.step(self.topology, None, state, None, 0.0, fire, None, self.uc)
