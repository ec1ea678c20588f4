"""Start a pipeline run on a Kubeflow Pipelines endpoint with `kfp.Client`.

By default the run uses a pipeline version deployed on the cluster (the PipelineVersion that
GitOps applied from an overlay, with its node pool, tolerations and storage): the newest version
of `--pipeline`, or the one `--version` names (name or id). `--package FILE` instead sends a local
compiled file with the run. The parameters come from the same YAML as `rlhf run` (one section per
stage plus `report_to`); they are validated against the stage configs and sent complete, so the
run records every value it used.

Every API call is bounded (connect 10 s, read 60 s, and never past `--timeout`, which bounds the whole
command); a refused connection is tried twice more, a request the server took but never answered is
not (creating a run is not idempotent). A call that runs out says which request it was waiting for.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
import yaml
from kfp import Client
from kfp.client import ServiceAccountTokenVolumeCredentials

from kfrlhf.common.config import regular_file
from kfrlhf.pipelines.definitions.run_config import load_config

TOKEN_ENV = "KFP_TOKEN"
# Where Kubeflow projects a pipelines-audience token into pods that may call the API.
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"


CONNECT_S, READ_S = 10.0, 60.0  # one API call's bounds, within what is left of --timeout
RETRIES = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=2, backoff_factor=0.5)


def _client(host: str, namespace: str | None, token: str | None, deadline: float) -> Client:
    token = token or os.environ.get(TOKEN_ENV)
    credentials = None
    if not token and Path(os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", SA_TOKEN_PATH)).exists():
        # Re-read on every request: projected tokens rotate during a long `--wait`.
        credentials = ServiceAccountTokenVolumeCredentials()
    warnings.filterwarnings("ignore", "This client only works with Kubeflow Pipeline", FutureWarning)
    from kfp_server_api import rest

    # kfp.Client makes its REST client and calls the API (healthz) in its constructor: bound the REST
    # clients made meanwhile.
    make = rest.RESTClientObject.__init__

    def bounded(self, *args, **kwargs):
        make(self, *args, **kwargs)
        _bound(self, host, deadline)

    rest.RESTClientObject.__init__ = bounded
    try:
        return Client(host=host, namespace=namespace or "kubeflow", existing_token=token, credentials=credentials)
    finally:
        rest.RESTClientObject.__init__ = make


class NoAnswer(TimeoutError):
    """The KFP API took a request and did not answer it in time."""


def _bound(rest, host: str, deadline: float) -> None:
    """Give every request of kfp_server_api's REST client (which sends none by default) a connect and read
    timeout within `deadline` (time.monotonic()) and the retry budget RETRIES; a timeout is one line."""
    rest.pool_manager.connection_pool_kw["retries"] = RETRIES  # the pools are made at the first request
    plain = rest.request

    def request(method, url, *args, _request_timeout=None, **kwargs):
        what = f"{method} {urlsplit(url).path}"
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"--timeout ran out before {what} to the KFP API at {host}")
        try:
            return plain(method, url, *args, _request_timeout=(min(CONNECT_S, left), min(READ_S, left)), **kwargs)
        except urllib3.exceptions.HTTPError as err:
            reason = getattr(err, "reason", None) or err
            if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
                raise NoAnswer(
                    f"the KFP API at {host} accepted the connection but did not answer {what} within "
                    f"{min(READ_S, left):.0f} s: check --host (a KFP API endpoint, e.g. http://HOST:8888) or "
                    "raise --timeout"
                ) from None
            raise ConnectionError(f"cannot reach the KFP API at {host}: {reason} (waiting for {what})") from None

    rest.request = request


def pipeline_arguments(params_yaml: str | Path | None = None, preset: str | None = None, overrides=()) -> dict:
    """The pipeline's arguments: one dict per stage plus `report_to`, defaults filled in."""
    cfg = load_config(preset=preset, files=[params_yaml] if params_yaml else [], overrides=overrides)
    return cfg.to_dict()


def _declared(spec: dict) -> set[str]:
    """The pipeline's parameters: the RLHF pipeline has no `dpo`, the DPO pipeline no `ppo`."""
    spec = spec.get("pipeline_spec", spec)  # the API wraps a spec that has a platform spec
    return set(spec["root"]["inputDefinitions"]["parameters"])


def package_parameters(package: str | Path) -> set[str]:
    """The parameters of a compiled pipeline file; a file that is none is one line naming it."""
    try:
        regular_file(package, f"--package {package}")
        spec = next(yaml.safe_load_all(Path(package).read_text(encoding="utf-8")), None)
    except OSError as err:
        raise ValueError(f"--package {package}: {err.strerror or err}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"--package {package} is not a YAML file: {' '.join(str(err).split())[:200]}") from None
    try:
        return _declared(spec)
    except (AttributeError, KeyError, TypeError):
        raise ValueError(
            f"--package {package} is not a compiled KFP pipeline (no root.inputDefinitions): use rlhf compile"
        ) from None


def _taken(arguments: dict, declared: set[str]) -> dict:
    return {k: v for k, v in arguments.items() if k in declared}


def deployed_version(client: Client, pipeline: str, version: str | None = None):
    """The pipeline version to run: `version` (name or id) of `pipeline`, else its newest."""
    pipeline_id = client.get_pipeline_id(pipeline)
    if pipeline_id is None:
        raise ValueError(f"no pipeline named {pipeline!r} on the server; deploy an overlay or use --package FILE")
    versions = client.list_pipeline_versions(pipeline_id, page_size=200, sort_by="created_at desc").pipeline_versions
    for v in versions or []:
        if version is None or version in (v.pipeline_version_id, v.name, v.display_name):
            return v
    raise ValueError(f"pipeline {pipeline!r} has no version" + (f" {version!r}" if version else ""))


def submit(
    host: str,
    pipeline: str = "rlhf",
    params_yaml: str | Path | None = None,
    namespace: str | None = None,
    experiment: str = "rlhf",
    run_name: str | None = None,
    token: str | None = None,
    wait: bool = False,
    timeout: float = 24 * 3600,
    service_account: str | None = None,
    preset: str | None = None,
    overrides=(),
    version: str | None = None,
    package: str | Path | None = None,
) -> tuple[str, str | None]:
    """Create a run of the deployed `pipeline` (or of a local `package`); return (run URL, final state or None)."""
    deadline = time.monotonic() + timeout  # --timeout bounds the whole command, waiting included
    arguments = pipeline_arguments(params_yaml, preset, overrides)
    if package:  # checked before the host is contacted
        arguments = _taken(arguments, package_parameters(package))
    with _api_errors(host):
        return _create_run(
            host,
            pipeline,
            arguments,
            namespace,
            experiment,
            run_name,
            token,
            wait,
            deadline,
            service_account,
            version,
            package,
        )


@contextlib.contextmanager
def _api_errors(host: str):
    """The API client's errors (a long traceback) as one line."""
    import urllib3
    from kfp_server_api.exceptions import ApiException

    try:
        yield
    except urllib3.exceptions.HTTPError as err:
        reason = getattr(err, "reason", None) or err
        raise ConnectionError(f"cannot reach the KFP API at {host}: {reason}") from None
    except ApiException as err:
        raise RuntimeError(f"the KFP API at {host} answered {err.status} {err.reason}: {err.body or ''}") from None


def _create_run(
    host, pipeline, arguments, namespace, experiment, run_name, token, wait, deadline, service_account, version, package
):
    client = _client(host, namespace, token, deadline)
    if package:
        result = client.create_run_from_pipeline_package(
            str(package),
            arguments=arguments,
            run_name=run_name or Path(package).name.split(".")[0],
            experiment_name=experiment,
            namespace=namespace,
            service_account=service_account,
        )
    else:
        chosen = deployed_version(client, pipeline, version)
        result = client.run_pipeline(
            client.create_experiment(experiment, namespace=namespace).experiment_id,
            run_name or pipeline,
            params=_taken(arguments, _declared(chosen.pipeline_spec)),
            pipeline_id=chosen.pipeline_id,
            version_id=chosen.pipeline_version_id,
            service_account=service_account,
        )
    url = f"{host.rstrip('/')}/#/runs/details/{result.run_id}"
    if not wait:
        return url, None
    try:
        run = client.wait_for_run_completion(result.run_id, timeout=max(deadline - time.monotonic(), 0))
    except NoAnswer:
        raise
    except TimeoutError:  # kfp's own wait, or the time left before a call
        raise TimeoutError(f"{url} had not finished when --timeout ran out; it goes on running") from None
    return url, run.state
