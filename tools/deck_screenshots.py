"""The guided lecture's screenshots: every step of the built-in deck in lecture mode at the two sizes a
lecture hall has (1920×1080, 1280×720), one `robustlens --deck --deck-step K --screenshot …` run each.

    python tools/deck_screenshots.py                 every step, both sizes, into docs/lecture/
    python tools/deck_screenshots.py --steps 2 5     only these steps
    python tools/deck_screenshots.py --out /tmp/l    elsewhere (deck-KK-WxH.png beneath it)
    python tools/deck_screenshots.py --deck my.toml  another deck file

Each picture waits for the step's jobs to end (--settle): a shipped result is shown at once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("1920x1080", "1280x720")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="*", help="1-based steps (default: all)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "lecture"))
    parser.add_argument("--deck", default="", help="a deck file (default: the built-in deck)")
    parser.add_argument("--sizes", nargs="*", default=list(SIZES))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from robustlens.engine.deck_file import read_deck

    deck = read_deck(args.deck or None)
    steps = args.steps or list(range(1, len(deck.steps) + 1))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    failed = 0
    for step in steps:
        for size in args.sizes:
            out = Path(args.out) / f"deck-{step:02d}-{size}.png"
            command = [sys.executable, "-m", "robustlens", "--deck", *([args.deck] if args.deck else []),
                       "--deck-step", str(step), "--screenshot", str(out), "--lecture", "--size", size,
                       "--settle", "--timeout", "900"]
            started = time.monotonic()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            errors = [line for line in done.stderr.splitlines() if "propagateSizeHints" not in line]
            print(f"{out.name}: {'ok' if done.returncode == 0 else 'FAILED'} "
                  f"({time.monotonic() - started:.0f} s) {' '.join(errors[-2:])}", flush=True)
            failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
