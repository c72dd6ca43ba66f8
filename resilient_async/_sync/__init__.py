"""Dual-mode drivers, sync side: generated from `_async` (except `_backend.py`)."""
