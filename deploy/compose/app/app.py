"""A stand-in for your app: the kind of endpoint browsers poll, `GET /api/prices?symbol=X`,
whose answer changes every second. Standard library only, so it runs on python:3.11-slim."""

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/api/prices":
            symbol = parse_qs(url.query).get("symbol", ["DEMO"])[0]
            second = int(time.time())
            body = json.dumps({"symbol": symbol, "price": 100 + second % 50, "at": second})
            self.answer(200, "application/json", body)
        else:
            self.answer(200, "text/html", "<!doctype html><title>app</title><p>your app</p>")

    def answer(self, status: int, kind: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("0.0.0.0", 9000), Handler).serve_forever()
