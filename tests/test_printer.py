"""The headless printer (tuiprune.printer) on a terminal and redirected, fed the events of a
run the real engine wrote; expected text is built from the raw JSON lines, not by the printer."""

from __future__ import annotations

import io
import json
import re

from helpers.dash import RSST
from tuiprune.printer import Printer

CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def raw_events():
    return [json.loads(line) for line in (RSST / "events.jsonl").read_text().splitlines()]


def fed(tty: bool, width: int = 200) -> str:
    stream = io.StringIO()
    printer = Printer(stream=stream, tty=tty)
    if tty:
        printer.console.width = width
    for ev in raw_events():
        printer(ev)
    printer.close()
    printer.summary(RSST)
    assert printer.failed == 0 and printer.skipped == 0
    return stream.getvalue()


def test_tty_mode_draws_progress_epoch_lines_tables_and_the_summary():
    out = fed(tty=True)
    assert "\x1b[" in out  # colours and cursor control: it drew for a terminal
    text = CSI.sub("", out)
    evs = raw_events()
    started = evs[0]
    epochs = [e for e in evs if e["event"] == "epoch_ended"]
    # the progress bar of the last epoch: its description and batch count
    last_start = [e for e in evs if e["event"] == "epoch_started"][-1]
    assert f"state {last_start['state']} · epoch {last_start['epoch'] + 1}/{started['epochs']}" \
        in text
    assert f"{last_start['batches']}/{last_start['batches']}" in text
    for e in epochs:
        assert (f"state {e['state']} epoch {e['epoch']}: train {e['train_acc']:.2f}% (loss "
                f"{e['train_loss']:.3f}) val {e['val_acc']:.2f}%") in text
    pruned = [e for e in evs if e["event"] == "pruned"]
    assert text.count("attn sparsity") == len(pruned) and pruned
    for row in pruned[-1]["layers"]:
        assert f"{row['heads_kept']}/{row['heads_total']}" in text
    end = evs[-1]
    assert f"run completed: best val {end['best_val_acc']:.2f}%" in text
    assert "summary · rsst_global" in text
    for e in (e for e in evs if e["event"] == "state_ended"):
        assert f"{e['best_val_acc']:.2f}%" in text


def test_plain_mode_has_one_line_per_epoch_and_no_control_characters():
    out = fed(tty=False)
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    epochs = [e for e in raw_events() if e["event"] == "epoch_ended"]
    assert sum(1 for ln in lines if re.match(r"state \d+ epoch \d+: train", ln)) == len(epochs)
    assert not any("ETA" in ln for ln in lines)  # no progress bar when redirected


def test_an_event_that_does_not_fit_is_skipped_and_counted_not_raised():
    stream = io.StringIO()
    printer = Printer(stream=stream, tty=False)
    for bad in ({"v": 1, "event": "epoch_ended", "time": 1.0, "seq": 0, "state": "zero",
                 "epoch": 0}, {"event": {"nested": 1}}, ["not", "an", "event"], None):
        printer(bad)
    printer({"v": 1, "event": "warning", "time": 1.0, "seq": 1, "message": "still here"})
    assert printer.skipped == 4 and stream.getvalue() == "warning: still here\n"


def test_a_failing_handler_is_said_once_and_does_not_reach_the_run(capsys):
    class Broken(Printer):
        def on_warning(self, ev):
            raise RuntimeError("bug \x1b]0;x\x07")

    printer = Broken(stream=io.StringIO(), tty=False)
    for seq in range(3):
        printer({"v": 1, "event": "warning", "time": 1.0, "seq": seq, "message": "m"})
    assert printer.failed == 3
    err = capsys.readouterr().err
    assert err.count("could not show a warning event") == 1 and "\x1b" not in err
