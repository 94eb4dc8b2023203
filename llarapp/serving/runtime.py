"""onnxruntime sessions with configurable execution providers.

``cpu`` is the default; ``cuda`` for NVIDIA; ``rocm`` and ``migraphx`` for AMD Instinct
(MI100). ``auto`` takes every accelerator the installed onnxruntime build offers, then the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llarapp.cpus import available_cpus
from llarapp.errors import ConfigError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "rocm": "ROCMExecutionProvider", "migraphx": "MIGraphXExecutionProvider"}
AUTO_ORDER = ("migraphx", "rocm", "cuda", "cpu")


def resolve_providers(names: Sequence[str] = ("cpu",)) -> list[str]:
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted = [n for n in AUTO_ORDER if PROVIDERS[n] in available] if list(names) == ["auto"] \
        else list(names)
    out = []
    for name in wanted:
        if name not in PROVIDERS:
            raise ConfigError(f"unknown execution provider {name!r}; choose from "
                              f"{', '.join(PROVIDERS)} or auto")
        if PROVIDERS[name] not in available:
            raise ConfigError(f"execution provider {name!r} is not in this onnxruntime build "
                              f"(available: {', '.join(sorted(available))}); install "
                              "onnxruntime-gpu / onnxruntime-rocm or use cpu")
        out.append(PROVIDERS[name])
    if PROVIDERS["cpu"] not in out:
        out.append(PROVIDERS["cpu"])  # fallback for ops an accelerator does not cover
    return out


def session(path: str | Path, providers: Sequence[str] = ("cpu",), threads: int | None = None):
    """An InferenceSession; ``threads`` intra-op threads (default: the CPUs available)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cpus()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # idle threads sleep instead of spinning: a spinning pool starves the server's event
    # loop of the cores it shares (mpd-popular, 2 cores: 92 → 115 req/s at concurrency 16)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=resolve_providers(providers))


def declared_feeds(session) -> Callable[[dict], dict]:
    """``feeds → the feeds the graph declares`` (its inputs read once): the exporter drops
    inputs a graph never reads (``label_positions`` without the label pointer)."""
    wanted = {i.name for i in session.get_inputs()}
    return lambda feeds: {k: v for k, v in feeds.items() if k in wanted}


def first_output(session) -> Callable[[dict], Any]:
    """``feeds → the session's first output``, given the feeds its graph declares."""
    keep = declared_feeds(session)
    return lambda feeds: session.run(None, keep(feeds))[0]
