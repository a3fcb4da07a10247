"""Lets `python -m audiosearch_cli` run the CLI."""

import sys

from audiosearch_cli.main import main

sys.exit(main())
