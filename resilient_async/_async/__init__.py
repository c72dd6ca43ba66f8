"""Dual-mode drivers, async side: the source that tools/unasync.py turns into `_sync`."""
