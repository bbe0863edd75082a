"""Regenerate the quick-time column of the README's figure table from real run outputs.

Usage (after ``freqlens reproduce all --quick --out runs/quick --data DIR``):

    python scripts/readme_times.py runs/quick            # rewrite README.md in place
    python scripts/readme_times.py runs/quick --check    # exit 1 if README.md differs

Each row ``| `NAME` | ... | SECONDS |`` gets ``runtime_s`` from ``runs/quick/NAME/summary.json`` (rounded to
whole seconds); rows without a finished quick run keep their value and are listed on stderr. The sentence
that gives the total is rewritten from the same numbers when every row had a run. Nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROW = re.compile(r"^\| `(?P<name>[A-Za-z0-9-]+)` \|(?P<middle>.*)\| (?P<secs>[0-9.]+|—) \|$")
TOTAL = re.compile(r"\(`freqlens reproduce all --quick`, [0-9.]+ min in all\)")


def quick_runtimes(runs: Path) -> dict[str, float]:
    """``runtime_s`` of every finished quick run below ``runs``."""
    out: dict[str, float] = {}
    for summary in sorted(runs.glob("*/summary.json")):
        record = json.loads(summary.read_text())
        config = summary.parent / "config.json"
        finished = config.is_file() and json.loads(config.read_text()).get("finished")
        if record.get("quick") and finished and isinstance(record.get("runtime_s"), int | float):
            out[summary.parent.name] = float(record["runtime_s"])
    return out


def rewrite(readme: str, times: dict[str, float]) -> tuple[str, list[str]]:
    """README text with the quick column replaced; also the names whose rows had no run."""
    lines, missing = [], []
    for line in readme.splitlines():
        m = ROW.match(line)
        if m and m.group("middle").count("|") >= 1:  # description | data
            name = m.group("name")
            if name in times:
                secs = times[name]
                shown = f"{secs:.1f}" if secs < 10 else f"{round(secs)}"
                line = f"| `{name}` |{m.group('middle')}| {shown} |"
            else:
                missing.append(name)
        lines.append(line)
    text = "\n".join(lines) + "\n"
    if times and not missing:  # the total only from a complete set of runs
        total = sum(times.values()) / 60
        text = TOTAL.sub(f"(`freqlens reproduce all --quick`, {total:.1f} min in all)", text)
    return text, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="output root of `freqlens reproduce all --quick --out ...`")
    parser.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[1] / "README.md")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when README.md would change")
    args = parser.parse_args(argv)
    times = quick_runtimes(args.runs)
    if not times:
        print(f"no finished quick runs below {args.runs}", file=sys.stderr)
        return 2
    old = args.readme.read_text()
    new, missing = rewrite(old, times)
    for name in missing:
        print(f"no quick run of {name} below {args.runs}: its time is kept", file=sys.stderr)
    if args.check:
        return int(new != old)
    args.readme.write_text(new)
    print(f"{args.readme}: {len(times)} quick times from {args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
