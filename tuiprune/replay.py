"""``tuiprune replay RUN_DIR|events.jsonl [--speed X]``: play a recorded run back."""

from __future__ import annotations

import math

from engine.errors import UserError


def replay_main(target: str, speed: float, ascii_only: bool) -> int:
    from tuiprune.dashboard.targets import replay_target
    from tuiprune.watch import require_terminal

    if not math.isfinite(speed) or speed < 0:
        raise UserError(f"--speed must be 0 or more (0 jumps to the end), not {speed}")
    run_dir, log = replay_target(target)
    require_terminal("replay")
    from tuiprune.dashboard.app import DashboardApp

    app = DashboardApp(log, run_dir, mode="replay", ascii_only=ascii_only, speed=speed)
    app.run()
    return app.return_code or 0
