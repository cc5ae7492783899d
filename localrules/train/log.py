"""Metrics: one JSON object per line, optionally mirrored to TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path


class MetricLog:
    """Appends to ``path``; ``resume_from=k`` first drops rows logged after step k (they belong
    to iterations the resumed run repeats) and lines that do not parse (a line torn by a crash)."""

    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None,
                 resume_from: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is not None and self.path.is_file():
            keep = [ln for ln in self.path.read_text(errors="replace").splitlines()
                    if _step(ln) is not None and _step(ln) <= resume_from]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        self._file = self.path.open("a")
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError("--tensorboard needs TensorBoard, which is not installed: "
                                 "pip install 'localrules[tensorboard]'") from None

            self._tb = SummaryWriter(str(tensorboard_dir))

    def write(self, step: int, **metrics: float) -> None:
        self._file.write(json.dumps({"step": step, **metrics}) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _step(line: str) -> int | None:
    """The step of one metrics line; None for a blank, torn or foreign line."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


class NullLog:
    """What processes other than rank 0 of a data-parallel run log: nothing."""

    def write(self, step: int, **metrics: float) -> None:
        pass

    def close(self) -> None:
        pass
