"""``tuiprune report`` on hostile input: escape sequences, Rich/Markdown markup, table pipes
and newlines in every string a log or path can carry, checkpoints that hold pickled code, and
malformed or mutated logs. The report must neither crash nor hang, and neither its Markdown
file nor its terminal output may carry a control byte from the data."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest
import torch
from helpers.report import RUNS, cells, copy_run, doctor_log, events, plain, verification

from tuiprune import report as R

PAYLOAD = ("A\x1b]52;c;SGVsbG8=\x07B\x1b[2J\x9b31m[link=http://evil.example]x[/link]x[/]y"
           " | cell\nnext line &#x1b;[0m <b>html</b> `code` [md](http://evil.example) \x00Z")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SGR = re.compile("\x1b\\[[0-9;]*m")


def poison(evs):
    """Put the payload in every string field a viewer shows."""
    for ev in evs:
        kind = ev["event"]
        if kind == "run_started":
            ev.update(name=PAYLOAD, run_id=PAYLOAD, host=PAYLOAD, device=PAYLOAD,
                      criterion=PAYLOAD, versions={PAYLOAD: PAYLOAD})
            ev["model"].update(name=PAYLOAD, weights_source=PAYLOAD)
            ev["data"]["dataset"] = PAYLOAD
            ev["config"]["prune"]["rewind"] = PAYLOAD
        elif kind in ("pruned",):
            ev["criterion"] = PAYLOAD
        elif kind == "run_ended":
            ev["message"] = PAYLOAD
    evs.insert(3, {**evs[2], "event": "warning", "message": PAYLOAD})
    evs.insert(4, {**evs[2], "event": "error", "message": PAYLOAD, "traceback": PAYLOAD})
    return evs


def check_tables(text):
    """Every row of every table has as many cells as its header."""
    width = None
    for line in text.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        n = len(cells(line))
        width = n if width is None else width
        assert n == width, line


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    run = copy_run("refill_global", base)
    doctor_log(run, poison, renumber=True)
    hostile = base / "run|x\x1b]0;TITLE\x07\n[link=y]"
    run.rename(hostile)
    return hostile


def test_markdown_carries_no_control_byte_and_no_live_markup(poisoned):
    text = R.build_report(poisoned)
    assert not CONTROL.search(text.replace("\n", "").replace("\t", ""))
    check_tables(text)
    seen = plain(text)
    # the payload is shown, made visible: ESC as \x1b, the newline as \n
    assert "A\\x1b]52;c;SGVsbG8=\\x07B" in seen and " | cell\\nnext line" in seen
    assert "\\&#x1b;" in text            # no character reference can decode to ESC
    assert "\\[md\\](http://evil.example)" in text     # no Markdown link
    assert "\\<b\\>html\\</b\\>" in text
    assert "# Pruning report: A\\x1b]52" in seen
    rows = verification(text)
    assert {mark for mark, _ in rows.values()} == {R.MARK[R.PASS]}, rows


def test_terminal_output_has_only_the_reports_own_styling(poisoned, tmp_path):
    out = tmp_path / "r.md"
    env = {**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "tuiprune", "report", str(poisoned),
                          "--out", str(out)], capture_output=True, text=True, timeout=300,
                         env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "\x1b[" in res.stdout                       # it did style (a terminal)
    rest = SGR.sub("", res.stdout)
    assert "\x1b" not in rest and not CONTROL.search(rest.replace("\n", ""))
    assert "\x1b]8;" not in res.stdout                 # no hyperlink from data
    assert "A\\x1b]52;c;SGVsbG8=\\x07B" in rest
    assert "report written to" in rest and "\\x1b]0;TITLE\\x07" in rest
    assert not CONTROL.search(out.read_text().replace("\n", ""))


class Code:
    """Pickled by reference: a checkpoint holding it holds code, not only weights."""


def test_checkpoint_with_pickled_code_keeps_the_table_whole(tmp_path):
    run = copy_run("refill_global", tmp_path)
    ckpt = torch.load(run / "checkpoints" / "state2_best.pt", weights_only=True)
    ckpt["payload"] = Code()
    torch.save(ckpt, run / "checkpoints" / "state2_best.pt")
    text = R.build_report(run)
    check_tables(text)
    mark, detail = verification(text)["Final checkpoint: masks cut whole heads and neurons"]
    assert mark == R.MARK[R.FAIL]
    assert "holds pickled code, not just weights; tuiprune refuses to run it" in detail


CRAFTED = [
    "[" * 5000 + "]" * 5000,
    '{"v":1,"event":{"nested":"dict"},"time":1.0,"seq":1}',
    '{"v":1,"event":"run_started","time":1.0,"seq":0,"states":Infinity}',
    '{"v":1,"event":"state_started","time":1.0,"seq":1,"state":1e30}',
    '{"v":1,"event":"epoch_ended","time":1.0,"seq":"two","state":0,"epoch":0}',
    '{"v":1,"event":"pruned","time":1.0,"seq":3,"state":0,"step":0,"layers":[{"block":0}]}',
    '{"v":1,"event":"lambda","time":1.0,"seq":4,"state":0,"step":NaN}',
    '{"v":1,"event":"run_ended","time":1.0,"seq":5,"status":["completed"]}',
    '{"v":1,"event":"warning","time":1.0,"seq":6,"message":' + "[" * 900 + "]" * 900 + '}',
    "\x1b]0;title\x07",
]


def test_crafted_lines_are_skipped_and_counted(tmp_path):
    run = copy_run("rsst_global", tmp_path, checkpoints=False)
    good = (run / "events.jsonl").read_text()
    (run / "events.jsonl").write_text("\n".join(CRAFTED) + "\n" + good)
    text = R.build_report(run)
    assert f"{len(CRAFTED)} malformed line(s) skipped" in text
    assert not CONTROL.search(text.replace("\n", ""))
    assert verification(text)["Each hard cut equals its target"][0] == R.MARK[R.PASS]


VALUES = [None, "x", "\x1b[2J", -1, 0, 1e308, 2 ** 70, 1e30, True, [], {}, [[[]]], {"a": [1]},
          "[/]", 3.5, -0.0]


def mutate(lines, rng):
    """One random edit of a log: a field's value, a deleted field or line, a duplicated,
    swapped or cut line."""
    lines = list(lines)
    i = rng.randrange(len(lines))
    what = rng.randrange(6)
    if what <= 1:
        ev = json.loads(lines[i])
        key = rng.choice(sorted(ev))
        if what == 0:
            ev[key] = rng.choice(VALUES)
        else:
            del ev[key]
        lines[i] = json.dumps(ev)
    elif what == 2:
        del lines[i]
    elif what == 3:
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif what == 4:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines[i] = lines[i][:rng.randrange(len(lines[i]))]
    return lines


@pytest.mark.parametrize("name", ["refill_global", "rsst_global"])
def test_mutated_logs_never_break_the_report(tmp_path, name):
    """Seeded: 150 logs, each 1 to 4 random edits of a real one."""
    run = copy_run(name, tmp_path, checkpoints=False)
    original = (RUNS / name / "events.jsonl").read_text().splitlines()
    rng = random.Random(14)
    for _ in range(150):
        lines = original
        for _ in range(rng.randint(1, 4)):
            lines = mutate(lines, rng)
        (run / "events.jsonl").write_text("\n".join(lines) + "\n")
        text = R.build_report(run)
        assert text.startswith("# Pruning report")
        assert not CONTROL.search(text.replace("\n", ""))
        check_tables(text)
    assert len(events(RUNS / name)) == len(original)
