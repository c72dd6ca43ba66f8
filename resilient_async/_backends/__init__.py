"""Hand-written backend implementations that the async drivers reach through `_async/_backend.py`.

They live outside `_async/`, so `tools/unasync.py` generates no sync twin of them: each one
serves a single async library (`asyncio_deadline`, `trio_deadline`), chosen once when a
`DeadlineScope` is made.
"""
