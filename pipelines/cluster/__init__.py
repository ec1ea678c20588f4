"""Cluster tooling: what a Kubeflow cluster needs to run the pipelines: `platform.py` (GPUs, node pools,
secrets, PVC, retries), `images.py` (image names, the cuda and cpu flavours, build commands), `image_build.py`
(`rlhf images` on a machine: the builder, the cpu base, mounts, progress), `compile.py` (the YAML and manifests),
`submit.py` (upload and run), `check.py` (`rlhf cluster check`: what a cluster has of what the stages need)
and `cli.py` (`rlhf compile`, `render-trainjob`, `images`, `submit`).

Imports the pipeline definitions, the launch room (`kfrlhf.launch`: the TrainJob) and `kfrlhf.common`, never
the local tooling. Only `rlhf` (`kfrlhf.pipelines.cli`) imports it."""
