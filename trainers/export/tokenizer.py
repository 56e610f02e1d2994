"""gpt-oss's tokenizer in Hugging Face format, built offline from the harmony vocabulary.

llama.cpp's converter reads a checkpoint's ``tokenizer.json`` (through
``transformers.AutoTokenizer``) to write the GGUF vocabulary. Our checkpoints (the tiny
random model, trainer checkpoints) have none, and nothing can be downloaded here, so
:func:`harmony_tokenizer_dir` builds one from what openai-harmony already uses:

- the byte-pair ranks of ``o200k_base.tiktoken`` (``$TIKTOKEN_ENCODINGS_BASE``), turned into
  a ``tokenizers`` BPE by ``transformers``' ``TikTokenConverter``;
- the o200k split pattern, from tiktoken's own ``o200k_harmony`` definition (read offline
  through tiktoken's cache, with tiktoken's hash check of the file);
- the 1,090 special tokens (ids 199998..201087), named by openai-harmony's decoder.

The result tokenizes llama.cpp's pre-tokenizer probe string to the hash the converter knows
as ``gpt-4o`` (the pre-tokenizer llama.cpp runs for gpt-oss), and
``tests/trainers/test_llamacpp_export.py`` holds its ids equal to openai-harmony's. Building
takes about a minute (deriving 446k merges); the files are cached by vocabulary hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from agent_envs.harmony import FIRST_SPECIAL_ID, VOCAB_SIZE
from trainers.errors import TrainersError

__all__ = ["TOKENIZER_FILES", "TokenizerBuildError", "harmony_tokenizer_dir"]

#: The files a converter (and ``AutoTokenizer``) needs.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_FIRST_SPECIAL, _VOCAB_SIZE = FIRST_SPECIAL_ID, VOCAB_SIZE
_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


class TokenizerBuildError(TrainersError, RuntimeError):
    """The harmony tokenizer could not be built (vocabulary missing, mismatch)."""


def _cache_dir(vocab_sha: str) -> Path:
    base = os.environ.get("AGENT_ENVS_CACHE") or str(Path.home() / ".cache" / "agent-envs")
    return Path(base).expanduser() / "harmony-tokenizer" / vocab_sha[:16]


def _split_pattern(vocab_file: Path) -> str:
    """tiktoken's o200k_harmony split pattern, loaded without network access."""
    with tempfile.TemporaryDirectory() as cache:
        # tiktoken looks its files up by the sha1 of their URL in TIKTOKEN_CACHE_DIR
        os.symlink(vocab_file, Path(cache) / hashlib.sha1(_TIKTOKEN_URL.encode()).hexdigest())
        old = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = cache
        try:
            import tiktoken_ext.openai_public as public

            return str(public.o200k_harmony()["pat_str"])
        except Exception as e:  # tiktoken raises ValueError/OSError on a bad file
            raise TokenizerBuildError(
                f"tiktoken could not read {vocab_file} as o200k_base ({e}); the file must be "
                f"the o200k_base vocabulary openai-harmony uses.") from e
        finally:
            if old is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = old


def harmony_tokenizer_dir(*, rebuild: bool = False) -> Path:
    """A directory with gpt-oss's tokenizer in Hugging Face format (built once, cached).

    Args:
        rebuild: build again even if a cached copy exists.

    Returns:
        The directory holding :data:`TOKENIZER_FILES`.

    Raises:
        TokenizerBuildError: the harmony vocabulary file cannot be found, or the built
            tokenizer disagrees with openai-harmony on the special tokens.
    """
    from agent_envs.harmony import load_encoding, resolve_vocab_file

    vocab_file = resolve_vocab_file()
    if vocab_file is None:
        raise TokenizerBuildError(
            "building the GGUF tokenizer needs the harmony vocabulary file: set "
            "TIKTOKEN_ENCODINGS_BASE to the directory holding o200k_base.tiktoken (in this "
            "repository's CI: ../shared/vocab).")
    sha = hashlib.sha256(vocab_file.read_bytes()).hexdigest()
    out = _cache_dir(sha)
    if not rebuild and all((out / f).is_file() for f in TOKENIZER_FILES):
        return out

    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    encoding = load_encoding()
    names = [encoding.decode_utf8([i]) for i in range(_FIRST_SPECIAL, _VOCAB_SIZE)]
    backend = TikTokenConverter(vocab_file=str(vocab_file), pattern=_split_pattern(vocab_file),
                                extra_special_tokens=names).converted()
    wrong = [(i, n) for i, n in enumerate(names, _FIRST_SPECIAL) if backend.token_to_id(n) != i]
    if backend.get_vocab_size() != _VOCAB_SIZE or wrong:
        raise TokenizerBuildError(
            f"the built tokenizer has {backend.get_vocab_size()} tokens (expected "
            f"{_VOCAB_SIZE}) and {len(wrong)} special token(s) at the wrong id (first: "
            f"{wrong[:1]}); is {vocab_file} the o200k_base vocabulary?")
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|startoftext|>",
                                  eos_token="<|return|>", pad_token="<|endoftext|>",
                                  model_max_length=131072)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".build-"))
    try:
        tok.save_pretrained(tmp)
        # transformers 5 writes no special_tokens_map.json; gguf's SpecialVocab reads either
        cfg = json.loads((tmp / "tokenizer_config.json").read_text(encoding="utf-8"))
        (tmp / "special_tokens_map.json").write_text(json.dumps(
            {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token") if k in cfg}, indent=2),
            encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
