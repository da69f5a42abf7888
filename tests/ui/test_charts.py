"""Text charts, and the shared formats the dashboard draws with."""

from __future__ import annotations

from tuiprune import format as fmt
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


def test_charts_survive_extreme_values():
    huge = [(0, -1.7e308), (1, 1.7e308), (2, 0.0), (3, 5e-324)]
    rows = plain(line_chart([Line(huge, "", "*")], 20, 6, ASCII))
    assert len(rows) == 6 and all(len(r) == 20 for r in rows)
    flat = plain(line_chart([Line([(0, 1e308), (1, 1e308)], "", "*")], 20, 4, ASCII))
    assert sum(r.count("*") for r in flat) >= 2
    assert len(sparkline([-1.7e308, 1.7e308, 0.0], 3, ASCII)) == 3
    assert segmented_bar(-10**18, 4, 8, ASCII).plain == "........"  # clamped, not 10^18 cells
    assert segmented_bar(10**18, 4, 8, ASCII).plain == "########"


def test_formats():
    assert fmt.duration(3725) == "1:02:05"
    assert fmt.duration(90061) == "1d 01:01:01"
    assert fmt.duration(None) == fmt.NO_VALUE
    assert fmt.ratios([0.3, 0.3]) == "30%" and fmt.ratios([0.3, 0.2]) == "30/20%"
    assert fmt.sci(0.8412) == "0.8412" and fmt.sci(4.9e-07) == "4.90e-07"
    assert fmt.count(21233664) == "21,233,664" and fmt.pct(None) == fmt.NO_VALUE
    assert fmt.pct(12.345, 1) == "12.3%" and fmt.clock(None) == "--:--:--"
    assert [fmt.plural(n, "line") for n in (0, 1, 2, 1234)] == \
        ["0 lines", "1 line", "2 lines", "1,234 lines"]


def test_printable_tree_escapes_every_string_keys_included():
    got = fmt.printable_tree({"a\x1b": ["\x07x", {"k": "\x9b"}], "n": 1.5, "t": None})
    assert got == {"a\\x1b": ["\\x07x", {"k": "\\x9b"}], "n": 1.5, "t": None}


def test_sparkline_on_a_fixed_scale():
    # 0..100 on 7 ASCII levels: 0 -> level 0, 50 -> 3, 100 -> 6, out of range clamped
    assert sparkline([0, 50, 100, 150, -5], 5, ASCII, (0.0, 100.0)) == "_=##_"
    assert sparkline([45, 46], 2, ASCII, (0.0, 100.0)) == "=="  # no min-max stretch


def test_span_size_and_share_formats():
    assert [fmt.span(s) for s in (0, 45.9, 60, 75, 599, 600, 3725, 90061, -1, None)] == \
        ["0s", "45s", "1m 00s", "1m 15s", "9m 59s", "10m", "1h 02m", "1d 1h", "--", "--"]
    gib = 1 << 30
    assert [fmt.size(b) for b in (512, 1536, 3 * gib + gib // 5, 120 * gib, None)] == \
        ["512 B", "1.5 KiB", "3.2 GiB", "120 GiB", "--"]
    assert fmt.size_of(20 * gib, 80 * gib) == "20.0/80.0 GiB"
    assert fmt.size_of(512 << 20, 2 * gib) == "0.5/2.0 GiB"  # the whole's unit
    assert fmt.size_of(160 * gib, 640 * gib) == "160/640 GiB"
    assert fmt.size_of(None, 8 * gib) == "--/8.0 GiB" and fmt.size_of(gib, None) == "1.0 GiB"
    assert [fmt.share(v) for v in (0.357, 0.3, 1.0, None)] == ["36%", "30%", "100%", "--"]
