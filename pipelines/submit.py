"""Start a pipeline run on a Kubeflow Pipelines endpoint with `kfp.Client`.

The parameters come from the same YAML as `rlhf run` (one section per stage plus
`report_to`); they are validated against the stage configs and sent complete, so the run
records every value it used. The command-line equivalent for CI:
  kfp --endpoint $KFP_HOST run create --experiment-name rlhf --package-file pipelines/compiled/rlhf.yaml \
      sft='{"max_steps": 100}' report_to=none
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

from kfp import Client
from kfp.client import ServiceAccountTokenVolumeCredentials

from kfrlhf.pipelines.run_config import load_config

TOKEN_ENV = "KFP_TOKEN"
# Where Kubeflow projects a pipelines-audience token into pods that may call the API.
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"


def _client(host: str, namespace: str | None, token: str | None) -> Client:
    token = token or os.environ.get(TOKEN_ENV)
    credentials = None
    if not token and Path(os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", SA_TOKEN_PATH)).exists():
        # Re-read on every request: projected tokens rotate during a long `--wait`.
        credentials = ServiceAccountTokenVolumeCredentials()
    warnings.filterwarnings("ignore", "This client only works with Kubeflow Pipeline", FutureWarning)
    return Client(host=host, namespace=namespace or "kubeflow", existing_token=token, credentials=credentials)


def pipeline_arguments(params_yaml: str | Path | None = None, preset: str | None = None, overrides=()) -> dict:
    """The pipeline's arguments: one dict per stage plus `report_to`, defaults filled in."""
    cfg = load_config(preset=preset, files=[params_yaml] if params_yaml else [], overrides=overrides)
    return cfg.to_dict()


def _taken(arguments: dict, package: str) -> dict:
    """The arguments the compiled pipeline declares: the RLHF pipeline has no `dpo`, the DPO pipeline no `ppo`."""
    import yaml

    declared = next(yaml.safe_load_all(Path(package).read_text()))["root"]["inputDefinitions"]["parameters"]
    return {k: v for k, v in arguments.items() if k in declared}


def _package(pipeline: str, tmp: str) -> str:
    """A compiled file as given, or a pipeline name compiled now with the default settings."""
    if Path(pipeline).is_file():
        return pipeline
    from kfrlhf.pipelines.compile import PIPELINES, compile_pipeline
    from kfrlhf.pipelines.platform import ClusterSettings

    if pipeline not in PIPELINES:
        raise ValueError(f"{pipeline!r} is neither a file nor a pipeline name ({', '.join(PIPELINES)})")
    return str(compile_pipeline(pipeline, Path(tmp), ClusterSettings())[0])


def submit(
    host: str,
    pipeline: str,
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
) -> tuple[str, str | None]:
    """Create a run; return (run URL, final state or None when not waiting)."""
    arguments = pipeline_arguments(params_yaml, preset, overrides)
    with _api_errors(host):
        return _create_run(
            host, pipeline, arguments, namespace, experiment, run_name, token, wait, timeout, service_account
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


def _create_run(host, pipeline, arguments, namespace, experiment, run_name, token, wait, timeout, service_account):
    client = _client(host, namespace, token)
    with tempfile.TemporaryDirectory() as tmp:
        package = _package(pipeline, tmp)
        result = client.create_run_from_pipeline_package(
            package,
            arguments=_taken(arguments, package),
            run_name=run_name or Path(package).name.split(".")[0],
            experiment_name=experiment,
            namespace=namespace,
            service_account=service_account,
        )
    url = f"{host.rstrip('/')}/#/runs/details/{result.run_id}"
    if not wait:
        return url, None
    run = client.wait_for_run_completion(result.run_id, timeout=timeout)
    return url, run.state
