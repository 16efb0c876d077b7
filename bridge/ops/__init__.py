"""Operations: what an operator reads of a running bridge — the admin listener's handler
(`/healthz`, `/readyz`, `/metrics`, `/streams`) and the Prometheus collector behind `/metrics`.

Above the server: the composition root (app.py) gives a `Bridge` the admin handler's factory,
and these modules read the bridge and its site through their public attributes. Nothing below
imports this package.
"""
