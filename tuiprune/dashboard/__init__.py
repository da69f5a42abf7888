"""The live dashboard (``tuiprune watch``/``replay``).

Layers, each importable alone: :mod:`~tuiprune.dashboard.reducer` (events -> view model, no
Textual), :mod:`~tuiprune.dashboard.charts` (text charts), ``widgets/`` (one feature each) and
:mod:`~tuiprune.dashboard.app` (wires a log source to them). Nothing here imports torch.
"""
