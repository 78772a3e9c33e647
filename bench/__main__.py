"""``python -m bench [--quick | --smoke] …``; see bench/cli.py."""

import sys

from bench.cli import run

if __name__ == "__main__":  # the client processes import bench modules; never re-run a benchmark there
    sys.exit(run())
