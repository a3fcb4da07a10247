"""Lets `python -m audiosearch.cli` run the CLI."""

import sys

from audiosearch.cli.main import main

sys.exit(main())
