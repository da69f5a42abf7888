#!/bin/sh
# Regenerates docs/img/accuracy.png, the figure the README shows: the offline demo run
# (configs/demo.toml, 1-3 minutes on a laptop CPU), then `tuiprune report` on it.
#     sh docs/img/make_figure.sh            (PYTHON=... to use another interpreter)
set -e
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m tuiprune run demo --set "run.output_dir='$tmp'" > "$tmp/run.log" 2>&1
"$PYTHON" -m tuiprune report "$tmp"/demo-* --out "$tmp/report" > /dev/null
cp "$tmp/report/accuracy.png" docs/img/accuracy.png
echo "docs/img/accuracy.png written"
