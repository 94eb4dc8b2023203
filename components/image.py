"""The container image every component runs in (built from the repo's Dockerfile)."""

import os

# Override at compile time for a private registry: LLARAPP_IMAGE=registry/llarapp:tag
BASE_IMAGE = os.environ.get("LLARAPP_IMAGE", "ghcr.io/llarapp/llarapp:0.1.0")
