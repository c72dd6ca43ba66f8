"""The demos of `python -m resilient_async demo`: each tells one story with the library.

- `pipeline`: a failing dependency, called unprotected and through a pipeline (the default);
- `supervision`: a supervised worker pool whose workers crash and come back;
- `saga`: orders rolled back by their compensations, and a crashed process recovered;
- `repeatable`: what makes every demo repeat for a seed (seeded jitter, virtual time).
"""
