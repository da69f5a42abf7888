"""Text charts and number formats."""

from __future__ import annotations

from tuiprune.dashboard import fmt
from tuiprune.dashboard.charts import Line, bar, line_chart, segmented_bar, sparkline
from tuiprune.dashboard.glyphs import ASCII, UNICODE


def plain(lines):
    return [t.plain for t in lines]


def test_line_chart_ascii_draws_marks_axis_labels_and_steps():
    up = Line([(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)], "cyan", ".")
    down = Line([(1, 40.0), (4, 10.0)], "magenta", "*")
    rows = plain(line_chart([up, down], 20, 6, ASCII, steps=[2.5],
                            x_labels=[(1, "s0"), (3, "s1")]))
    assert len(rows) == 6 and all(len(r) == 20 for r in rows)
    assert rows[0].startswith("40+") and rows[4].startswith("10+")
    assert rows[5].startswith("  +s0")
    assert "s1" in rows[5]
    assert rows[0][3] == "*" and rows[0].rstrip().endswith(".")  # val starts high, train ends high
    assert rows[4][3] == "." and rows[4].rstrip().endswith("*")
    assert any(":" in r for r in rows[:5])  # the pruning step
    assert all(ord(ch) < 128 for r in rows for ch in r)


def test_line_chart_unicode_uses_braille_and_handles_no_data():
    rows = plain(line_chart([Line([(0, 1.0), (1, 2.0)], "", "*")], 12, 3, UNICODE))
    assert any(0x2800 <= ord(ch) <= 0x28FF for r in rows for ch in r)
    assert plain(line_chart([Line([], "", "*")], 12, 3, UNICODE)) == ["no data yet"]


def test_bars_and_sparklines():
    assert bar(0.5, 10, ASCII).plain == "#####....."
    assert bar(0.3, 4, UNICODE).plain == "█▎░░"  # 1.2 cells: one full, 2/8 of the next
    assert bar(None, 3, ASCII).plain == "..."
    assert segmented_bar(2, 6, 13, ASCII).plain == "####........ "
    assert sparkline([0, 1, 2, 3], 4, ASCII) == "_-+#"
    assert sparkline(list(range(100)), 10, UNICODE)[0] == "▁"
    assert len(sparkline(list(range(100)), 10, UNICODE)) == 10
    assert sparkline([5, 5], 4, ASCII) == "=="


def test_formats():
    assert fmt.duration(3725) == "1:02:05"
    assert fmt.duration(90061) == "1d 01:01:01"
    assert fmt.duration(None) == "--:--"
    assert fmt.ratios([0.3, 0.3]) == "30%" and fmt.ratios([0.3, 0.2]) == "30/20%"
    assert fmt.compact(0.8412) == "0.8412" and fmt.compact(4.9e-07) == "4.90e-07"
    assert fmt.count(21233664) == "21,233,664" and fmt.pct(None) == "--"
