"""An engine on another host (its pid file names that host) is judged by the log's heartbeat:
the time of its last event, ``heartbeat`` events included. The dashboard says "no news for
Ns", louder past a minute and five minutes, and never a false "engine lost"; a local engine
keeps the pid check (``test_app_live.py``)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from engine.pidfile import write_pidfile
from helpers.dash import RSST, events_of, screen_text, settle, validated, wait_for
from helpers.system_log import write_log
from tuiprune.dashboard import liveness
from tuiprune.dashboard.app import DashboardApp
from tuiprune.dashboard.liveness import EngineWatch, news_age, news_level
from tuiprune.dashboard.reducer import ENGINE_REMOTE, Reducer
from tuiprune.dashboard.widgets.header import RunHeader

OTHER_HOST = "gpu-node-17.cluster"


def remote_run(tmp_path: Path, last_event_ago: float, heartbeats_until_ago=None) -> Path:
    """RSST's log without run_ended, its clock moved so its last event was
    ``last_event_ago`` seconds ago, then heartbeats every 5 s up to ``heartbeats_until_ago``
    seconds ago; the pid file names another host."""
    events = events_of(RSST)[:-1]
    shift = time.time() - last_event_ago - events[-1]["time"]
    for ev in events:
        ev["time"] += shift
    if heartbeats_until_ago is not None:
        t = events[-1]["time"] + 5
        while t <= time.time() - heartbeats_until_ago:
            events.append({"v": 1, "event": "heartbeat", "time": t, "seq": len(events),
                           "state": 2, "phase": "evaluating"})
            t += 5
    run = write_log(tmp_path / "remote", events)
    (run / "engine.pid").write_text(json.dumps({"pid": 4242, "host": OTHER_HOST,
                                                "proc_start": None}) + "\n")
    return run


UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def no_news(text: str):
    """The seconds the header's "no news for …" says (``45s``, ``1m 30s``, ``12m``,
    ``2h 05m``), or None when it says nothing of the kind."""
    m = re.search(r"no news for ((?:\d+[dhms] ?)+)", text.splitlines()[0])
    if m is None:
        return None
    return sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)([dhms])", m.group(1)))


def news_style(app) -> str:
    status = app.query_one(RunHeader).status_text()
    return next(str(span.style) for span in status.spans
                if status.plain[span.start:span.end].startswith("no news"))


async def watch_for_a_while(app, pilot, ticks: int = 3) -> str:
    await settle(pilot)
    start = app.clock_ticks
    await wait_for(pilot, lambda: app.clock_ticks >= start + ticks, what="clock ticks")
    return screen_text(app)


async def test_a_remote_engine_quiet_for_90s_is_no_news_not_lost(tmp_path):
    run = remote_run(tmp_path, last_event_ago=90)
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(100, 30)) as pilot:
        text = await watch_for_a_while(app, pilot)
        assert "RUNNING" in text and "ENGINE LOST" not in text
        assert 90 <= no_news(text) <= 90 + 10  # seconds of this test's own pace
        assert news_style(app) == "bold yellow"
        assert any(f"the engine runs on host {OTHER_HOST}" in e.text for e in app.ctx.view.log)
        # a heartbeat arrives: news again
        with open(run / "events.jsonl", "a") as f:
            f.write(json.dumps({"v": 1, "event": "heartbeat", "time": time.time(),
                                "seq": 10_000, "state": 2, "phase": "checkpoint"}) + "\n")
        app.source.poke()
        await wait_for(pilot, lambda: no_news(screen_text(app)) is None,
                       what="the heartbeat to end the silence")
        assert "RUNNING" in screen_text(app)


async def test_heartbeats_count_as_news(tmp_path):
    # the last batch 10 minutes ago, heartbeats until 2 s ago: nothing to say
    run = remote_run(tmp_path, last_event_ago=600, heartbeats_until_ago=2)
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(100, 30)) as pilot:
        text = await watch_for_a_while(app, pilot, ticks=2)
        assert no_news(text) is None and "RUNNING" in text


async def test_silent_for_over_five_minutes_is_alarming_but_not_lost(tmp_path):
    run = remote_run(tmp_path, last_event_ago=1000, heartbeats_until_ago=400)
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(100, 30)) as pilot:
        text = await watch_for_a_while(app, pilot)
        age = no_news(text)
        assert 400 - 5 <= age <= 400 + 15  # from the last heartbeat, not the last batch
        assert news_style(app) == "bold white on red"
        assert "ENGINE LOST" not in text and "RUNNING" in text


async def test_a_replay_of_a_remote_run_shows_the_silence_once_at_its_end(tmp_path):
    run = remote_run(tmp_path, last_event_ago=3 * 3600)
    app = DashboardApp(run / "events.jsonl", run, mode="replay", speed=0)
    async with app.run_test(size=(100, 30)) as pilot:
        text = await watch_for_a_while(app, pilot, ticks=2)
        assert "replay: end" in text and "ENGINE LOST" not in text
        assert "no news for 3h 00m" in text.splitlines()[0]
    app = DashboardApp(run / "events.jsonl", run, mode="replay", speed=1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.ctx.view.states, what="the first events")
        app.redraw(urgent=True)
        await pilot.pause()
        assert "no news" not in screen_text(app)  # mid-replay: the log's past, no claim


def test_news_levels_escalate_past_a_minute_and_five_minutes():
    cases = [(None, None), (0.0, None), (14.9, None), (15.0, liveness.QUIET),
             (59.9, liveness.QUIET), (60.0, liveness.LATE), (299.9, liveness.LATE),
             (300.0, liveness.SILENT), (86400.0, liveness.SILENT)]
    assert [news_level(age) for age, _ in cases] == [level for _, level in cases]


def test_news_age_only_for_a_remote_engine_of_a_run_that_goes_on():
    r = Reducer()
    r.apply_all(validated(events_of(RSST)[:-1]))
    last = r.view.last_time
    assert news_age(r.view, last + 42) is None  # the engine is local
    r.apply({"v": 1, "event": ENGINE_REMOTE, "time": last, "seq": None, "host": OTHER_HOST})
    assert r.view.remote_host == OTHER_HOST
    assert news_age(r.view, last + 42) == 42 and news_age(r.view, None) is None
    assert news_age(r.view, last - 5) == 0  # a clock a little behind the engine's
    r.apply_all(validated(events_of(RSST)[-1:]))  # run_ended
    assert news_age(r.view, last + 42) is None


def test_engine_watch_says_when_the_engine_moves_between_hosts(tmp_path):
    run = remote_run(tmp_path, last_event_ago=5)
    r = Reducer()
    r.apply_all(validated(events_of(run)))
    watch = EngineWatch(run, run / "events.jsonl")
    ev = watch.look(r.view, True, None)
    assert (ev["event"], ev["host"]) == (ENGINE_REMOTE, OTHER_HOST)
    r.apply(ev)
    assert watch.look(r.view, True, None) is None  # said once
    write_pidfile(run)  # resumed here: this process stands in for the engine
    ev = watch.look(r.view, True, None)
    assert (ev["event"], ev["host"]) == (ENGINE_REMOTE, "")
    r.apply(ev)
    assert r.view.remote_host == "" and watch.look(r.view, True, None) is None


async def test_stopping_an_engine_on_another_host_leaves_a_stop_request(tmp_path):
    from tuiprune.dashboard.widgets.screens import ConfirmStop

    run = remote_run(tmp_path, last_event_ago=3)
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("S")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmStop)
        await pilot.press("y")
        await settle(pilot)
    request = json.loads((run / "stop.request").read_text())
    assert request["pid"] > 0 and request["host"]
