"""kfrlhf.pipelines: the stages wired into KFP pipelines, and the tooling that runs them; `cli.py` is `rlhf`.

Three rooms: `definitions/` (the pipelines, their shared head and tail, the stage list, the run config),
`cluster/` (platform and image settings, compile, submit: `rlhf compile`, `render-trainjob`, `submit`) and
`local/` (kfp.local runs, the console, `rlhf compare`, `rlhf generate`). The tooling rooms import the
definitions, never each other; only `cli.py` imports both. Nothing under `kfrlhf` outside this package
imports it."""
