"""The stream seam: what a handler holds for one request/response exchange, below both the
server (which drives it) and the handlers (which answer it).

`Exchange` (exchange.py) is one stream as a handler sees it; it reaches its connection only
through a `StreamPort` (port.py) and the process only through an `ExchangeHost` (host.py), so
nothing here knows a transport, an HTTP version, the server or the handlers. What the access
log says about an exchange travels with it in an `AccessRecord` (record.py).
"""
