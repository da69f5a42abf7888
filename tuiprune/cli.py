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
) -> None:
    """Run a pruning experiment headless (Rich progress on a terminal, plain lines otherwise)."""
    from tuiprune.run_command import run_main, stop_on_signals

    stop_on_signals()  # from here on, before torch is even imported, a stop is orderly

    raise typer.Exit(run_main(config, overrides=set_, dry_run=dry_run, resume=resume,
                              run_dir=run_dir))


@app.command()
def watch(
    target: Optional[str] = typer.Argument(
        None, help="A config file (starts a run), a run directory (attaches), or nothing "
        "(attaches to the newest run)."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP, metavar="KEY=VALUE"),
    ascii_only: bool = typer.Option(False, "--ascii", help="Draw charts and bars with plain "
                                    "ASCII (for terminals without Unicode block glyphs)."),
) -> None:
    """Start a run in the background and watch it live, or re-attach to one."""
    from tuiprune.watch import watch_main

    raise typer.Exit(watch_main(target, overrides=set_, ascii_only=ascii_only))


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
    run_dir: Path = typer.Argument(..., help="The run directory to report on."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="A second run to set "
                                           "beside it.", metavar="OTHER_RUN_DIR"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the Markdown report here."),
) -> None:
    """Write the experiment report (Markdown) and print it."""
    from tuiprune.report import report_main

    raise typer.Exit(report_main(run_dir, compare=compare, out=out))


@app.command()
def stop(
    run_dir: Path = typer.Argument(..., help="The run directory whose engine should stop."),
) -> None:
    """Ask a running engine to checkpoint and stop (it ends with status ``stopped``)."""
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
