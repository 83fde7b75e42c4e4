"""`python -m llmops.cli`: the same command line as the `llmops` entry point."""

import sys

from llmops.cli import main

sys.exit(main())
