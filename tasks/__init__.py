"""The systems built on the shared core, one file each (installed as ``localrules.tasks``)."""
