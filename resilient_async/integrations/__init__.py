"""Integrations with other libraries: ASGI deadline middleware (`integrations.asgi`).

Each integration is its own module, imported on its own, so that importing
`resilient_async` never imports a framework.
"""
