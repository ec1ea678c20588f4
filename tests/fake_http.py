"""What the tests' loopback fakes of HTTP APIs (KFP, Model Registry, Kubernetes) share."""

from __future__ import annotations

import json


def reply_json(handler, status: int, body) -> None:
    """Answer the request `handler` serves with `body` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
