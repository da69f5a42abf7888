"""``tuiprune report RUN_DIR [--compare OTHER_RUN_DIR] [--out report.md]``.

The experiment report, in Markdown, from the run's event log (``docs/events.md``):
configuration, a per-state table, the per-layer table of every pruning step with the most and
least pruned layers, the RSST λ summary, verification rows computed from the data, the export
results when the run directory holds any, and what the log lacks. The same report is printed
to the terminal with Rich.

- :mod:`.log` reads the run (the fold is ``engine.runlog``),
- :mod:`.checks` and :mod:`.weight_checks` compute the verification rows (one function each;
  the checkpoint rows need torch and are skipped, with the reason, without it),
- :mod:`.markdown`, :mod:`.steps` and :mod:`.compare` write the sections, and
  :mod:`.mdtext` is the one place where data becomes Markdown.

A torn or partial log is reported, never fatal: the reader skips and counts what it cannot
validate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from engine.errors import UserError
from tuiprune.format import printable
from tuiprune.report.checks import FAIL, MARK, PASS, SKIP, Check, log_checks
from tuiprune.report.log import LoggedRun, read_run
from tuiprune.report.markdown import render
from tuiprune.report.weight_checks import weight_checks

__all__ = ["FAIL", "MARK", "PASS", "SKIP", "Check", "LoggedRun", "build_report", "read_run",
           "report_main"]


def build_report(run_dir: Path, compare: Optional[Path] = None) -> str:
    """The Markdown report of ``run_dir`` (beside ``compare`` when given)."""
    run = read_run(run_dir)
    checks = log_checks(run.log) + weight_checks(run)
    other = read_run(compare) if compare is not None else None
    return render(run, checks, other)


def write_atomic(out: Path, text: str) -> None:
    """Write the report file through a temporary file (a failed write leaves no half file)."""
    if out.is_dir():
        raise UserError(f"--out {printable(out)}: is a directory; give a file name such as "
                        f"report.md")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"--out {printable(out)}: cannot write "
                        f"({printable(exc.strerror or exc)})") from None


def report_main(run_dir: Path, compare: Optional[Path] = None, out: Optional[Path] = None) -> int:
    """The ``report`` command: write ``out`` (when given) and print the report."""
    text = build_report(Path(run_dir), Path(compare) if compare is not None else None)
    if out is not None:
        write_atomic(Path(out), text)
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.text import Text

    console = Console(highlight=False)
    console.print(Markdown(text, hyperlinks=False))
    if out is not None:
        console.print(Text(f"report written to {printable(out)}", style="dim"), soft_wrap=True)
    return 0
