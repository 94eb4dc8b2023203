"""``python -m llarapp.serving --model_dir BUNDLE``: the KServe model server."""

from llarapp.serving.server import main

main()
