"""Reads of campaigns, one module per kind: broadcasts, drips, scheduled messages."""
