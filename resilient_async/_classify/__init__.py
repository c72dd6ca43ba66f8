"""The parts of `resilient_async.classify`, split by how often they change.

- `kinds`: `ErrorClass` and the shapes of rules and checks (rarely changes).
- `engine`: `Classifier`, the current classifier and `classify` (rarely changes).
- `rules`: the default rules, one module per family of errors (grows with every library).
- `retry_after`: reading a server's `Retry-After` hint.
- `on`: compiling the `on=` argument every policy accepts.

`resilient_async.classify` is the public module; nothing here is imported by users.
"""
