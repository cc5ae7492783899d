"""Topology-blind training machinery: pool, perturbations, trainer, checkpoints, logs."""
