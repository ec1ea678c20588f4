"""A loopback fake of the Kubeflow Model Registry REST API (/api/model_registry/v1): enough of it for
the `model-registry` client's register_model and get_model_version, recording every request."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.fake_http import reply_json

PREFIX = "/api/model_registry/v1"


class FakeModelRegistry:
    def __init__(self):
        self.requests: list[dict] = []  # {method, path, query, body, authorization}
        self.objects: dict[str, list[dict]] = {"registered_models": [], "model_versions": [], "artifacts": []}
        handler = type("Handler", (_Handler,), {"registry": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def sent(self, method: str, path: str) -> list[dict]:
        """The bodies of the requests `method path` (path after the API prefix)."""
        return [r["body"] for r in self.requests if r["method"] == method and r["path"] == PREFIX + path]

    def _create(self, kind: str, body: dict, **extra) -> dict:
        n = sum(len(v) for v in self.objects.values()) + 1
        obj = {**body, **extra, "id": str(n), "createTimeSinceEpoch": "1", "lastUpdateTimeSinceEpoch": "1"}
        self.objects[kind].append(obj)
        return obj

    def handle(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        route = path.removeprefix(PREFIX).strip("/").split("/")
        one = {k: v[0] for k, v in query.items()}
        if method == "GET" and route == ["registered_models"]:
            items = self.objects["registered_models"]
            return 200, {"items": items, "nextPageToken": "", "pageSize": len(items), "size": len(items)}
        if method == "GET" and route == ["registered_model"]:
            found = [m for m in self.objects["registered_models"] if m["name"] == one.get("name")]
            return (200, found[0]) if found else (404, {"code": "404", "message": "not found"})
        if method == "GET" and route == ["model_version"]:
            found = [
                v
                for v in self.objects["model_versions"]
                if v["name"] == one.get("name") and v["registeredModelId"] == one.get("parentResourceId")
            ]
            return (200, found[0]) if found else (404, {"code": "404", "message": "not found"})
        if method == "POST" and route == ["registered_models"]:
            return 201, self._create("registered_models", body)
        if method == "POST" and route == ["model_versions"]:
            return 201, self._create("model_versions", body)
        if method == "POST" and len(route) == 3 and route[0] == "model_versions" and route[2] == "artifacts":
            return 201, self._create("artifacts", body, modelVersionId=route[1])
        return 404, {"code": "404", "message": f"the fake has no {method} {path}"}


class _Handler(BaseHTTPRequestHandler):
    registry: FakeModelRegistry

    def _serve(self, method: str):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        record = {"method": method, "path": url.path, "query": parse_qs(url.query), "body": body}
        self.registry.requests.append({**record, "authorization": self.headers.get("Authorization")})
        status, out = self.registry.handle(method, url.path, record["query"], body)
        reply_json(self, status, out)

    def do_GET(self):  # noqa: N802 (http.server's names)
        self._serve("GET")

    def do_POST(self):  # noqa: N802
        self._serve("POST")

    def do_PATCH(self):  # noqa: N802
        self._serve("PATCH")

    def log_message(self, *args):
        pass
