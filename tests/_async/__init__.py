"""Tests written once for the async drivers; tools/unasync.py generates their sync twin."""
