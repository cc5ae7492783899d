"""PyTorch Geometric, imported once here: PyG 2.x scripts some classes with ``torch.jit.script``
at import time, which torch 2.13 deprecates with a warning that is PyG's business, not the
user's; that one warning is silenced while PyG loads."""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
    from torch_geometric.nn import MessagePassing
    from torch_geometric.utils import scatter

__all__ = ["MessagePassing", "scatter"]
