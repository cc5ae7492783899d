"""The shared local-rule core: perception, rule, topologies and the NCA step."""

from .nca import NCA
from .perception import OFFSETS, MoorePerception
from .rule import Rule
from .topology import AliveCells, Grid2D, GridGraph

__all__ = ["NCA", "OFFSETS", "MoorePerception", "Rule", "AliveCells", "Grid2D", "GridGraph"]
