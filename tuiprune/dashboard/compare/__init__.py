"""The compare screen: 2–6 runs side by side, live (``c`` in the run browser, or
``tuiprune watch SWEEP_DIR --compare``).

- :mod:`.model` holds the compared runs (one ``Reducer`` each, fed by its own ``Tailer``) and
  computes what the panels show from their view models (no Textual);
- :mod:`.panels` draws accuracy vs sparsity, accuracy over epochs, per-layer sparsity of a
  chosen state and the config diff; :mod:`.screen` wires the readers, the keys and the layout.
"""
