"""``python -m llarapp.serving --model_dir BUNDLE``: the KServe model server."""

from llarapp.serving.server import main

if __name__ == "__main__":  # spawned workers import this module too
    main()
