"""``tuiprune watch [CONFIG | RUN_DIR | DIR] [--compare]``: start a run in the background and/or
follow it live, or browse the runs of an output or sweep directory (``runs`` without an
argument) and compare them.

Quitting the dashboard leaves the engine running; we print how to come back.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from engine.errors import UserError


def require_terminal(command: str) -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError(f"tuiprune {command} draws a dashboard and needs an interactive "
                        "terminal; without one use tuiprune run (headless)")


def watch_main(target: Optional[str], overrides: List[str], ascii_only: bool,
               compare: bool = False) -> int:
    from tuiprune.dashboard.targets import watch_target

    resolved = watch_target(target, list(overrides), compare)
    require_terminal("watch")
    if resolved.browse is not None:
        from tuiprune.dashboard.browser.app import BrowserApp

        browser = BrowserApp(resolved.browse, ascii_only, resolved.compare)
        browser.run()
        return browser.return_code or 0
    if resolved.config is not None:
        from tuiprune.launch import start_detached

        run_dir = start_detached(resolved.config, resolved.overrides)
    else:
        run_dir = resolved.run_dir
    from engine.rundir import EVENTS_FILE
    from tuiprune.dashboard.app import DashboardApp
    from tuiprune.dashboard.liveness import engine_state
    from tuiprune.format import printable

    app = DashboardApp(run_dir / EVENTS_FILE, run_dir, mode="watch", ascii_only=ascii_only)
    app.run()
    if app.return_code not in (None, 0):
        return app.return_code
    shown = printable(run_dir, newlines=False)
    if engine_state(run_dir):
        print(f"The run goes on in the background. Re-attach with: tuiprune watch {shown}")
    else:
        print(f"Run {app.ctx.view.status}. Look at it again with: tuiprune watch {shown}")
    return 0
