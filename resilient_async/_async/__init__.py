"""Dual-mode drivers, written once in async form; tools/unasync.py generates the sync twin."""
