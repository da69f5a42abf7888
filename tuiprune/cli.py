"""The ``tuiprune`` command line.

Every command imports its implementation lazily, so ``tuiprune replay`` never pays for (or
needs) torch. Errors the user can fix arrive as :class:`engine.errors.UserError` and are printed
as one line, without a traceback, with exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from engine.errors import UserError

app = typer.Typer(
    name="tuiprune",
    help="Iterative structured pruning (Refill, RSST) of Vision Transformers, watched live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SET_HELP = "Override a config key, e.g. --set prune.sorting=layer-wise (repeatable)."


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="TOML config file (omit with --resume)."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP, metavar="KEY=VALUE"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate, print the resolved config "
                                 "and the model's prunable structure, then exit."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in RUN_DIR "
                                          "from its latest checkpoint.", metavar="RUN_DIR"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", hidden=True,
                                           help="Write into this (new) run directory."),
    nproc: Optional[int] = typer.Option(None, "--nproc-per-node", metavar="N",
                                        help="Train with N processes (GPUs) on this node: "
                                        "starts torchrun for you."),
) -> None:
    """Run a pruning experiment headless (Rich progress on a terminal, plain lines otherwise)."""
    from tuiprune.run_command import run_main, stop_on_signals

    stop_on_signals()  # from here on, before torch is even imported, a stop is orderly

    raise typer.Exit(run_main(config, overrides=set_, dry_run=dry_run, resume=resume,
                              run_dir=run_dir, nproc=nproc))


@app.command()
def watch(
    target: Optional[str] = typer.Argument(
        None, help="A config file (starts a run), a run directory (attaches), an output or "
        "sweep directory (lists its runs), or nothing (lists the runs under runs/)."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP, metavar="KEY=VALUE"),
    ascii_only: bool = typer.Option(False, "--ascii", help="Draw charts and bars with plain "
                                    "ASCII (for terminals without Unicode block glyphs)."),
    compare: bool = typer.Option(False, "--compare", help="With a sweep directory of 2 to 6 "
                                 "members: open them side by side."),
) -> None:
    """Start a run in the background and watch it live, re-attach to one, or browse and
    compare runs."""
    from tuiprune.watch import watch_main

    raise typer.Exit(watch_main(target, overrides=set_, ascii_only=ascii_only,
                                compare=compare))


@app.command()
def replay(
    target: str = typer.Argument(..., help="A run directory or an events.jsonl file."),
    speed: float = typer.Option(10.0, "--speed", help="Time scale (0 jumps to the end)."),
    ascii_only: bool = typer.Option(False, "--ascii", help="Plain ASCII charts and bars."),
) -> None:
    """Play a recorded run back in the dashboard."""
    from tuiprune.replay import replay_main

    raise typer.Exit(replay_main(target, speed=speed, ascii_only=ascii_only))


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="The run directory to export from."),
    state: Optional[int] = typer.Option(None, "--state", help="State to export (default: last)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory "
                                       "(default: RUN_DIR/export-state<N>)."),
) -> None:
    """Export a physically compacted model with its measured speed-up."""
    from tuiprune.export import export_main

    raise typer.Exit(export_main(run_dir, state=state, out=out))


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="The run directory (or a sweep directory: one "
                                   "comparison of all its members) to report on.",
                                   metavar="RUN_DIR|SWEEP_DIR"),
    compare: Optional[Path] = typer.Option(None, "--compare", help="A second run to set "
                                           "beside it.", metavar="OTHER_RUN_DIR"),
    out: Optional[Path] = typer.Option(None, "--out", help="A folder (report.md and PNG "
                                       "figures in it) or a file (FILE.md with the figures "
                                       "beside it, FILE.html).", metavar="DIR|FILE"),
    fmt: Optional[str] = typer.Option(None, "--format", help="md (default) or html: one "
                                      "self-contained page, figures inlined.",
                                      metavar="md|html"),
) -> None:
    """Write the experiment report (Markdown or HTML, with figures) and print it."""
    from tuiprune.report import report_main

    raise typer.Exit(report_main(run_dir, compare=compare, out=out, fmt=fmt))


@app.command()
def sweep(
    config: Optional[Path] = typer.Argument(
        None, help="A config file with a \\[sweep.grid] table (or give --grid), or `demo`; omit "
        "with --resume."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP + " Applies to every member.",
                                   metavar="KEY=VALUE"),
    grid: List[str] = typer.Option([], "--grid", metavar="KEY=V1,V2", help="Vary a config "
                                   "key over values, e.g. --grid prune.method=refill,rsst "
                                   "(repeatable; every combination runs)."),
    parallel: Optional[int] = typer.Option(None, "--parallel", min=1, metavar="N",
                                           help="Run N members at once: one GPU each on "
                                           "CUDA, the CPU cores split on CPU (default 1)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the grid, print the members, "
                                 "start nothing."),
    yes: bool = typer.Option(False, "--yes", help="Allow a grid of more than 256 runs."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="SWEEP_DIR",
                                          help="Finish a sweep: skip completed members, "
                                          "resume stopped or killed ones, start the rest."),
    foreground: bool = typer.Option(False, "--foreground", help="Drive the sweep in this "
                                    "process (default: in the background, like watch)."),
) -> None:
    """Run every combination of a grid, each an ordinary run, under one sweep directory."""
    from tuiprune.sweep_command import sweep_main

    raise typer.Exit(sweep_main(config, set_, grid, parallel=parallel, dry_run=dry_run,
                                yes=yes, resume=resume, foreground=foreground))


@app.command(name="ls")
def ls_(
    directory: Optional[Path] = typer.Argument(
        None, help="An output directory (default: runs), a sweep directory or a run "
        "directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """List runs: status, progress and results (a table; plain text when redirected)."""
    from tuiprune.ls_command import ls_main

    raise typer.Exit(ls_main(directory, as_json=as_json))


@app.command()
def stop(
    run_dir: Path = typer.Argument(..., help="The run directory whose engine should stop, or "
                                   "a sweep directory (stops every member)."),
) -> None:
    """Ask a running engine (or a sweep) to checkpoint and stop (status ``stopped``)."""
    from tuiprune.stop_command import stop_main

    raise typer.Exit(stop_main(run_dir))


def main() -> None:
    """Console-script entry point. Every message that reaches the terminal goes through
    :func:`tuiprune.format.printable`: user errors are one line on stderr with exit status 2,
    command-line mistakes name the problem and the command's ``--help``, and a crash prints its
    traceback made safe (status 1)."""
    from tuiprune.format import printable

    try:
        code = app(standalone_mode=False)
    except UserError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # a command-line mistake, found by the parser
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already on the screen
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {printable(exc.format_message())}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception:
        import traceback

        print(printable(traceback.format_exc()), file=sys.stderr, end="")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
