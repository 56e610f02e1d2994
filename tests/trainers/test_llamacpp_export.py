"""GGUF export: the build script's cache key, the offline harmony tokenizer, llama.cpp's
converter on our checkpoints (tiny, trainer checkpoints with LoRA), and the in-place weight
push held byte-equal to a converter export."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from tests.trainers.llamacpp_util import needs_converter, tiny_gguf, tiny_model, tmp_root
from trainers.export import (
    GGUFExportError,
    LlamaCppNotBuiltError,
    cache_root,
    cpu_tag,
    export_gguf,
    find_binary,
    harmony_tokenizer_dir,
    hf_dir_for,
    source_dir,
)
from trainers.export.cli import main as export_main
from trainers.export.gguf_weights import gguf_tensors, read_layout, write_weights

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build_llama_server.sh"


def tensor(path: Path, name: str) -> np.ndarray:
    """One tensor of a GGUF file as float32 (F32 tensors only)."""
    _, layout = read_layout(path)
    slot = layout[name]
    assert slot.qtype.name == "F32"
    raw = np.fromfile(path, dtype=np.uint8, count=slot.n_bytes, offset=slot.offset)
    return raw.view(np.float32).reshape(slot.shape)


# -- the build script and its cache layout ---------------------------------------------------


def test_the_build_script_and_python_agree_on_where_the_build_lives() -> None:
    def run(*args: str) -> str:
        return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    assert run("--print-tag") == cpu_tag()
    assert Path(run("--print-dir")) == cache_root()
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "unknown argument '--bogus'" in bad.stderr


def test_a_build_made_by_another_recipe_is_built_again(tmp_path: Path) -> None:
    """The cache is keyed by the build's recipe too: binaries whose BUILD_INFO has no (or
    another) recipe line are built again, a build with this recipe's line is used as is.
    cmake is a stand-in that records its calls and writes the binaries."""
    cache = tmp_path / "cache"
    root = cache / "llama.cpp" / subprocess.run(
        ["bash", str(SCRIPT), "--print-dir"], capture_output=True, text=True, check=True,
        env={**os.environ, "AGENT_ENVS_CACHE": str(cache)}).stdout.strip().rsplit("/", 1)[1]
    tag = cpu_tag()
    (root / "src").mkdir(parents=True)
    (root / "src" / "convert_hf_to_gguf.py").write_text("")
    bindir = root / tag / "bin"
    bindir.mkdir(parents=True)
    for name in ("llama-server", "llama-quantize"):
        (bindir / name).write_text("#!/bin/sh\n")
        (bindir / name).chmod(0o755)
    (root / tag / "BUILD_INFO").write_text("tag old (no recipe line)\n")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    log = tmp_path / "cmake.log"
    (fake / "cmake").write_text(f"""#!/bin/sh
echo "$@" >> {log}
if [ "$1" = "--build" ]; then mkdir -p "$2/bin"; touch "$2/bin/llama-server" "$2/bin/llama-quantize"; chmod +x "$2/bin/"*; fi
if [ "$1" = "--version" ]; then echo "cmake version 0"; fi
""")
    (fake / "cmake").chmod(0o755)
    env = {**os.environ, "AGENT_ENVS_CACHE": str(cache), "LLAMA_NICE": "0",
           "PATH": f"{fake}:{os.environ['PATH']}"}

    def build() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                              env=env, check=True)

    out = build()
    assert log.read_text().count("--build") == 1, out.stderr  # built again
    info = (root / tag / "BUILD_INFO").read_text()
    assert re.search(r"^recipe [0-9a-f]{12}$", info, re.MULTILINE), info
    out = build()
    assert "cached" in out.stderr and log.read_text().count("--build") == 1
    (root / tag / "BUILD_INFO").write_text(info.replace("recipe ", "recipe 0"))
    build()
    assert log.read_text().count("--build") == 2


def test_missing_llama_cpp_names_the_build_command(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("AGENT_ENVS_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no llama-server on PATH either
    monkeypatch.delenv("AGENT_ENVS_LLAMA_SERVER", raising=False)
    with pytest.raises(LlamaCppNotBuiltError, match=re.escape(
            "bash scripts/build_llama_server.sh --source-only")):
        source_dir()
    with pytest.raises(LlamaCppNotBuiltError, match=re.escape(
            "Build it once (CPU, a few minutes on many cores; cached, keyed by version) with: "
            "bash scripts/build_llama_server.sh")):
        find_binary("llama-server")
    monkeypatch.setenv("AGENT_ENVS_LLAMA_SERVER", str(tmp_path / "nope"))
    with pytest.raises(LlamaCppNotBuiltError, match="AGENT_ENVS_LLAMA_SERVER=.*is not an "
                                                    "executable file"):
        find_binary("llama-server")
    assert export_main(["gguf", "tiny", str(tmp_path / "x.gguf")]) == 2


# -- the tokenizer ------------------------------------------------------------------------------


def test_the_offline_tokenizer_encodes_like_openai_harmony() -> None:
    from tokenizers import Tokenizer

    from agent_envs.harmony import load_encoding

    tok = Tokenizer.from_file(str(harmony_tokenizer_dir() / "tokenizer.json"))
    enc = load_encoding()
    assert tok.get_vocab_size() == 201088
    for name, tid in (("<|return|>", 200002), ("<|call|>", 200012), ("<|end|>", 200007),
                      ("<|start|>", 200006), ("<|reserved_201087|>", 201087)):
        assert tok.token_to_id(name) == tid
    text = ("<|start|>user<|message|>Qu'est-ce que c'est? 12345 + 67 = 😀 我想 \n\n\t  "
            "I've been 'told'<|end|><|start|>assistant<|channel|>analysis<|message|>")
    assert tok.encode(text, add_special_tokens=False).ids == enc.encode(text,
                                                                        allowed_special="all")


# -- export with llama.cpp's converter --------------------------------------------------------


@needs_converter
def test_cli_export_of_the_tiny_model_holds_its_weights_and_the_harmony_vocabulary() -> None:
    path = tiny_gguf("f32")
    meta, layout = read_layout(path)
    assert meta["general.architecture"] == "gpt-oss"
    assert meta["tokenizer.ggml.pre"] == "gpt-4o"  # the converter recognised the tokenizer
    assert meta["tokenizer.ggml.eos_token_id"] == 200002
    assert meta["gpt-oss.block_count"] == 2 and meta["gpt-oss.attention.sliding_window"] == 4
    assert len(layout) == 41
    model = tiny_model(0)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    np.testing.assert_array_equal(tensor(path, "token_embd.weight"),
                                  sd["model.embed_tokens.weight"])
    gate_up = sd["model.layers.1.mlp.experts.gate_up_proj"]  # [E, hidden, 2 * inter]
    np.testing.assert_array_equal(tensor(path, "blk.1.ffn_up_exps.weight"),
                                  np.swapaxes(gate_up, -1, -2)[:, 1::2, :])
    np.testing.assert_array_equal(tensor(path, "blk.0.attn_sinks.weight"),
                                  sd["model.layers.0.self_attn.sinks"])


@needs_converter
def test_pushed_weights_are_byte_equal_to_the_converters_export() -> None:
    template = tiny_gguf("f32")
    same = write_weights(template, tmp_root() / "same.gguf", tiny_model(0).named_parameters())
    assert same.read_bytes() == template.read_bytes()
    other = tiny_model(1)
    pushed = write_weights(template, tmp_root() / "seed1.gguf", other.named_parameters())
    assert pushed.read_bytes() != template.read_bytes()
    np.testing.assert_array_equal(tensor(pushed, "blk.1.attn_q.weight"),
                                  other.model.layers[1].self_attn.q_proj.weight.detach().numpy())
    mapped = dict(gguf_tensors(other.named_parameters(), 2))
    _, layout = read_layout(pushed)
    assert set(mapped) == set(layout)
    for name in layout:
        np.testing.assert_array_equal(tensor(pushed, name), mapped[name], err_msg=name)


@needs_converter
def test_bf16_pushes_encode_as_the_converter_does() -> None:
    template = tiny_gguf("bf16")
    _, layout = read_layout(template)
    kinds = {s.qtype.name for s in layout.values()}
    assert kinds == {"BF16", "F32"}  # matrices bf16, norms/biases/sinks kept f32
    same = write_weights(template, tmp_root() / "same-bf16.gguf",
                         tiny_model(0).named_parameters())
    assert same.read_bytes() == template.read_bytes()


@needs_converter
def test_pushing_into_another_architecture_is_refused(tmp_path: Path) -> None:
    from trainers.models import build_tiny_gpt_oss, tiny_gpt_oss_config

    wider = build_tiny_gpt_oss(tiny_gpt_oss_config(hidden_size=32))
    with pytest.raises(GGUFExportError, match="the template is another architecture"):
        write_weights(tiny_gguf("f32"), tmp_path / "x.gguf", wider.named_parameters())
    partial = [(n, p) for n, p in tiny_model(0).named_parameters() if "layers.1." not in n]
    with pytest.raises(GGUFExportError, match=r"no new weights for 19 tensor\(s\)"):
        write_weights(tiny_gguf("f32"), tmp_path / "x.gguf", partial)
    assert not (tmp_path / "x.gguf").exists()
    with pytest.raises(GGUFExportError, match="no GGUF name for 'model.extra.weight'"):
        list(gguf_tensors([("model.extra.weight", torch.zeros(2))], 2))


# -- sources ----------------------------------------------------------------------------------


def test_a_trainer_checkpoint_is_exported_with_its_lora_merged(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from trainers.config import load_config
    from trainers.train import Trainer

    cfg = load_config(ROOT / "configs" / "tiny-cpu.toml", [
        f"logging.out_dir={tmp_path / 'run'}", "model.lora=true", "model.lora_r=2",
        "logging.tensorboard=false", "logging.progress=false"])
    trainer = Trainer(cfg)
    try:
        with torch.no_grad():
            for name, p in trainer.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
        expected = trainer.model.get_base_model().model.layers[0].self_attn.q_proj
        merged_q = (expected.base_layer.weight + expected.get_delta_weight("default")).detach()
        base_q = expected.base_layer.weight.detach().clone()
        ckpt = trainer.save_checkpoint()
    finally:
        trainer.close()
    with hf_dir_for(ckpt) as hf:
        assert (hf / "tokenizer.json").is_file() and (hf / "config.json").is_file()
        weights = {}
        for f in hf.glob("*.safetensors"):
            weights.update(load_file(f))
    assert not any("lora" in k for k in weights)
    q = weights["model.layers.0.self_attn.q_proj.weight"]
    torch.testing.assert_close(q, merged_q)
    assert not torch.allclose(q, base_q)


def test_bad_sources_and_types_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GGUFExportError, match=r"outtype='q4km' is not supported.*did you mean "
                                              r"'q4_k_m'\?"):
        export_gguf("tiny", tmp_path / "x.gguf", outtype="q4km")
    with pytest.raises(GGUFExportError, match="not a Hugging Face gpt-oss directory.*it does "
                                              "not exist"), hf_dir_for(tmp_path / "missing"):
        pass
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / "adapter_config.json").write_text("{}")
    with pytest.raises(GGUFExportError, match="holds only LoRA adapters"), hf_dir_for(adapters):
        pass
    bogus = tmp_path / "step_000001.pt"
    torch.save({"no": "config"}, bogus)
    with pytest.raises(GGUFExportError, match="is not a trainer checkpoint"), hf_dir_for(bogus):
        pass
    with pytest.raises(GGUFExportError, match="needs a path or a gpt-oss model object, got "
                                              "Linear"), hf_dir_for(torch.nn.Linear(2, 2)):
        pass
    assert export_main(["gguf", str(tmp_path / "missing"), str(tmp_path / "x.gguf")]) == 2
