"""``tuiprune report RUN_DIR|SWEEP_DIR [--compare OTHER_RUN_DIR] [--out PATH] [--format md|html]``.

The experiment report, in Markdown (or one self-contained HTML file), from the event logs
(``docs/events.md``): configuration, figures, a per-state table, the per-layer table of every
pruning step with the most and least pruned layers, the RSST λ summary, verification rows
computed from the data, the export results when the run directory holds any, and what the log
lacks. A sweep directory gets one comparison report of all its members. The report is printed
too: rendered with Rich on a terminal, as Markdown when redirected.

- :mod:`.log` reads the run (the fold is ``engine.runlog``),
- :mod:`.checks` and :mod:`.weight_checks` compute the verification rows (one function each;
  the checkpoint rows need torch and are skipped, with the reason, without it),
- :mod:`.markdown`, :mod:`.steps`, :mod:`.compare` and :mod:`.sweep` write the sections, and
  :mod:`.mdtext` is the one place where data becomes Markdown,
- :mod:`.figdata`, :mod:`.figures` and :mod:`.plots` draw the PNG figures (matplotlib),
- :mod:`.output` decides where the files go and writes them.

A torn or partial log is reported, never fatal: the reader skips and counts what it cannot
validate.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from engine.errors import UserError
from engine.runlog import RunLog
from engine.sweepdir import is_sweep_dir
from tuiprune.format import printable
from tuiprune.report.checks import FAIL, MARK, PASS, SKIP, Check, log_checks
from tuiprune.report.figures import Figure, draw_all, runs_of, unavailable
from tuiprune.report.log import LoggedRun, read_run
from tuiprune.report.markdown import figures_section, render
from tuiprune.report.output import Destination, destination, write_report
from tuiprune.report.weight_checks import weight_checks

__all__ = ["FAIL", "MARK", "PASS", "SKIP", "Check", "LoggedRun", "build_report", "read_run",
           "report_main"]


def draw(logs: Sequence[Tuple[str, RunLog]], dest: Optional[Destination]) -> \
        Tuple[List[Figure], List[str], str]:
    """The figures of ``logs`` and their Markdown section (none without a destination), and
    why they could not be drawn ("" when they were)."""
    if dest is None:
        return [], [], ""
    missing = unavailable()
    if missing:
        return [], figures_section([], missing=missing), missing
    figures = draw_all(runs_of(logs))
    return figures, figures_section(figures, dest.prefix), ""


def build_report(run_dir: Path, compare: Optional[Path] = None,
                 dest: Optional[Destination] = None) -> str:
    """The Markdown report of ``run_dir`` (beside ``compare`` when given); with ``dest``,
    its figures section names the figure files written there."""
    return _run_report(Path(run_dir), compare, dest)[0]


def _run_report(run_dir: Path, compare: Optional[Path], dest: Optional[Destination]):
    run = read_run(run_dir)
    other = read_run(compare) if compare is not None else None
    logs = [(run.name, run.log)] + ([(other.name, other.log)] if other is not None else [])
    figures, lines, missing = draw(logs, dest)
    checks = log_checks(run.log) + weight_checks(run)
    return render(run, checks, other, lines), f"Pruning report: {run.name}", figures, missing


def _sweep_report(sweep_dir: Path, compare: Optional[Path], dest: Optional[Destination]):
    from tuiprune.report import sweep as sw

    if compare is not None:
        raise UserError("--compare takes a run directory; a sweep report already compares "
                        "all the sweep's members")
    found, members = sw.read_members(sweep_dir)
    logs = [(f"{m.code}: {m.member.name}", m.run.log) for m in members if m.run is not None]
    figures, lines, missing = draw(logs, dest)
    return (sw.render(found, members, lines), f"Sweep report: {printable(found.name)}", figures,
            missing)


def report_main(target: Path, compare: Optional[Path] = None, out: Optional[Path] = None,
                fmt: Optional[str] = None) -> int:
    """The ``report`` command: write the report (and its figures) to ``out`` when given, and
    print it. ``target``: a run directory (or its log), or a sweep directory."""
    dest = destination(out, fmt)  # an unwritable --out fails before the log is read
    build = _sweep_report if is_sweep_dir(Path(target)) else _run_report
    text, name, figures, missing = build(Path(target), compare, dest)
    written = write_report(dest, text, name, figures) if dest is not None else []
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.text import Text

    console = Console(highlight=False)
    if console.is_terminal:
        console.print(Markdown(text, hyperlinks=False))
    else:  # redirected: the Markdown itself (already made printable by .mdtext)
        sys.stdout.write(text)
        sys.stdout.flush()
    if missing:
        print(printable(missing), file=sys.stderr)
    if written:
        figs = f" and {len(written) - 1} figure(s)" if len(written) > 1 else ""
        console.print(Text(f"report written to {printable(written[0])}{figs}", style="dim"),
                      soft_wrap=True)
    else:
        console.print(Text("(add --out DIR to write the report with its figures)",
                           style="dim"), soft_wrap=True)
    return 0
