"""`audiosearch`: the command-line client of the audiosearch gateway."""

__version__ = "0.1.0"
