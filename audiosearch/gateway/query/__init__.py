"""The read flows: search and tagging, matching hits into recordings, and calibrating thresholds."""
