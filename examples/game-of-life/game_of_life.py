"""Your own local-rule task: learn Conway's Game of Life from examples.

Every cell of a random 0/1 board sees its 3x3 neighbourhood through a learned perception and one
shared rule MLP must output the cell's next state: one NCA step, every cell firing.

    python game_of_life.py                    # train (600 iterations) and print the cell accuracy
    localrules run game-of-life --help        # the same, once this folder is `pip install`ed

``pyproject.toml`` beside this file registers the task under the entry-point group
``localrules.tasks``; that is all `localrules run` needs to list it.
"""

from pathlib import Path

import torch
import typer

from localrules.core import NCA, Grid2D, MoorePerception, Rule
from localrules.train.loop import TrainConfig, train


def life_step(board: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 1) 0/1 -> the next generation (wrapping at the edges is not used: zero padding)."""
    n = torch.nn.functional.conv2d(board.permute(0, 3, 1, 2), torch.ones(1, 1, 3, 3), padding=1)
    n = n.permute(0, 2, 3, 1) - board  # live neighbours
    return ((n == 3) | ((board == 1) & (n == 2))).float()


class GameOfLife:
    """The trainer's Task interface: model, training_loss, extra_state, load_extra_state, config_dict."""

    def __init__(self, size: int = 16, batch: int = 32, hidden: int = 64, device="cpu"):
        self.size, self.batch, self.hidden, self.device = size, batch, hidden, torch.device(device)
        self.model = NCA(MoorePerception(1, 16), Rule(16, (hidden,), 1), fire_rate=1.0).to(self.device)

    def boards(self, n: int) -> torch.Tensor:
        return (torch.rand(n, self.size, self.size, 1, device=self.device) < 0.4).float()

    def training_loss(self, steps: int):
        board = self.boards(self.batch)
        guess = self.model.step(Grid2D(), None, board, None)  # no fixed channels, every cell alive
        target = life_step(board.cpu()).to(self.device)
        accuracy = ((guess > 0.5).float() == target).float().mean().item()
        return (guess - target).pow(2).mean(), {"cell_accuracy": accuracy}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def config_dict(self) -> dict:
        return {"name": "game-of-life", "size": self.size, "batch": self.batch, "hidden": self.hidden}


def run(
    iterations: int = typer.Option(600, min=1, help="Training iterations."),
    out: Path = typer.Option(Path("runs/game-of-life"), help="Run folder."),
    lr: float = typer.Option(3e-3, min=0, help="Adam learning rate."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
):
    """Learn Conway's Game of Life with a 3x3 local rule; prints the final cell accuracy."""
    torch.manual_seed(seed)
    task = GameOfLife(device=device)
    cfg = TrainConfig(iterations=iterations, lr=lr, lr_milestones=(), steps_min=1, steps_max=1,
                      checkpoint_every=iterations, log_every=20, seed=seed)
    last = train(task, cfg, out, task.device)
    typer.echo(f"cell accuracy {last['cell_accuracy']:.4f} after {iterations} iterations; rule in {out}")


if __name__ == "__main__":
    typer.run(run)
