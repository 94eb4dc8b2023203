"""The container image every component runs in, and the decorator that uses it.

Two ways to ship the components (README, "Container images"):

* Lightweight components (default): each function's source travels in the pipeline YAML
  and runs on ``LLARAPP_IMAGE``, built from the repo's Dockerfile with the library inside.
* Containerized components: set ``LLARAPP_TARGET_IMAGE`` and run
  ``kfp component build components/`` — the components are baked into that image on top
  of ``LLARAPP_IMAGE``, and the compiled YAML refers to it instead of carrying source.
"""

import functools
import os

from kfp import dsl

# Override at compile time for a private registry: LLARAPP_IMAGE=registry/llarapp:tag
BASE_IMAGE = os.environ.get("LLARAPP_IMAGE", "ghcr.io/llarapp/llarapp:0.1.0")
TARGET_IMAGE = os.environ.get("LLARAPP_TARGET_IMAGE") or None

# install_kfp_package=False: the image already has kfp, and local runs stay offline.
component = functools.partial(dsl.component, base_image=BASE_IMAGE, target_image=TARGET_IMAGE,
                              install_kfp_package=False)
