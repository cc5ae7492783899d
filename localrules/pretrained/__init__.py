"""Shipped checkpoints (safetensors + JSON config), their evaluations and model cards."""
