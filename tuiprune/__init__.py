"""tuiprune: the command line, the live dashboard, the headless printer and replay.

Nothing in this package imports torch at module level: ``watch`` and ``replay`` must start
fast and work on a laptop without torch.
"""

from engine import __version__

__all__ = ["__version__"]
