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


def kubeconfig_for(server, tmp_path, monkeypatch) -> None:
    """Make the `kubernetes` client's default kubeconfig point at the loopback `server` (a ThreadingHTTPServer)."""
    import yaml
    from kubernetes.config import kube_config

    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "fake", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
