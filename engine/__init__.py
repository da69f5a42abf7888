"""tuiprune's computation engine: structured pruning of timm Vision Transformers and the run loop.

Importing this package imports nothing heavy: ``engine.config``, ``engine.errors`` and
``engine.events`` are torch-free so the terminal UI can use them; the modules that compute
(``engine.pruning``, ``engine.rsst``, ``engine.train`` …) import torch themselves.
"""

__version__ = "0.1.0"
