"""What every stage's KFP component shares (the only shared module that imports kfp).

A lightweight component with nothing installed at run time: the stage image already holds the
project and kfp, and `kfp.local.SubprocessRunner` runs the same function in this Python. The
base image is a placeholder: `rlhf compile` sets each task's image (`kfrlhf.pipelines.cluster.images`).
"""

import functools

from kfp import dsl

stage_component = functools.partial(dsl.component, base_image="python:3.11", install_kfp_package=False)
