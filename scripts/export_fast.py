#!/usr/bin/env python3
"""Thin wrapper around `jaxstyle export` (see `--help`); runs from a checkout without installing."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from jaxstyle.cli import run_subcommand  # noqa: E402

raise SystemExit(run_subcommand("export"))
