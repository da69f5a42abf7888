"""The run browser (``tuiprune watch [DIR]``): the run table of an output or sweep directory,
live, sorted and filtered from the keyboard; Enter opens a run's dashboard, space marks runs
and ``c`` compares them (:mod:`tuiprune.dashboard.compare`).

- :mod:`.entries` turns the run table (``tuiprune.runlist``) into rows to show, sorts and
  filters them, and lists the directory again about once a second in a thread (no Textual);
- :mod:`.table` shows the rows; :mod:`.screen` is the screen and its keys; :mod:`.app` the App
  that ``tuiprune watch DIR`` runs.
"""
