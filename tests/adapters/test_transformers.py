"""Hugging Face models people save: a Llama built from a config round-trips once its
classes are trusted (in one step from inspect), and GPT-2's save_pretrained checkpoint,
which leaves out the tied lm_head.weight, loads into a fresh model keeping the tie.
Everything is built from configs: nothing is downloaded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import amber
from amber.errors import SerializationError, UntrustedTypeError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)


def test_llama_round_trips_or_says_to_save_its_weights(tmp_path: Path) -> None:
    """transformers 5.23 keeps only importable objects in a Llama: it round-trips with the
    names inspect lists. 5.25 keeps objects of classes made inside a function in its
    attention layers: saving the whole model is refused with the way that works, which is
    then tested."""
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    tokens = torch.tensor([[1, 2, 3, 4]])
    try:
        amber.save(model, tmp_path / "llama.amber")
    except SerializationError as exc:
        message = str(exc)
        assert "defined inside a function" in message and "into=model" in message
        assert " at 0x" not in message
        amber.save(model.state_dict(), tmp_path / "weights.amber")
        torch.manual_seed(1)
        fresh = transformers.LlamaForCausalLM(config).eval()
        loaded = amber.load(tmp_path / "weights.amber", into=fresh)
    else:
        names = amber.inspect(tmp_path / "llama.amber").untrusted_types
        assert "transformers.models.llama.modeling_llama.LlamaForCausalLM" in names
        with pytest.raises(UntrustedTypeError) as caught:
            amber.load(tmp_path / "llama.amber")
        assert f"trusted={sorted(names)!r}" in str(caught.value)
        loaded = amber.load(tmp_path / "llama.amber", trusted=names).eval()
    with torch.inference_mode():
        assert torch.equal(loaded(tokens).logits, model(tokens).logits)


def test_gpt2_checkpoint_without_tied_head_loads_into_a_fresh_model(tmp_path: Path) -> None:
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)
    torch.manual_seed(0)
    source = transformers.GPT2LMHeadModel(config)
    source.save_pretrained(tmp_path / "hf", safe_serialization=True)
    amber.convert(tmp_path / "hf" / "model.safetensors", tmp_path / "gpt2.amber")
    assert "lm_head.weight" not in {t.name for t in amber.inspect(tmp_path / "gpt2.amber").tensors}
    target = transformers.GPT2LMHeadModel(config)
    assert amber.load(tmp_path / "gpt2.amber", into=target) is target
    assert target.lm_head.weight is target.transformer.wte.weight
    assert torch.equal(target.lm_head.weight, source.lm_head.weight)
