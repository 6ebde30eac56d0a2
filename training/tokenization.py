"""Tokenisation with the `tokenizers` library, shared by training and (through tokenizer.json) the server.

The LSTM's WordPiece vocabulary is learned from the training texts deterministically: every character
(as a word start and as a `##` continuation) plus the most frequent words, ties broken alphabetically.
The library's own WordPiece trainer breaks ties differently on each run, which would make the same data
and seed give a different model. Unknown words fall back to their longest known prefix, then characters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

PAD, UNK = "[PAD]", "[UNK]"


def _normalizer() -> normalizers.Normalizer:
    return normalizers.BertNormalizer(lowercase=True)


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.BertPreTokenizer()


def build_wordpiece_vocab(
    texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (PAD, UNK)
) -> dict[str, int]:
    """Special tokens, then every character, then the most frequent words up to `vocab_size`."""
    normalizer, pre_tokenizer = _normalizer(), _pre_tokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    tokens = list(dict.fromkeys([*special_tokens, *chars, *(f"##{c}" for c in chars)]))
    known = set(tokens)
    by_frequency = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    tokens += [w for w, _ in by_frequency if w not in known][: max(0, vocab_size - len(tokens))]
    return {token: i for i, token in enumerate(tokens)}


def wordpiece_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    """A lower-casing BERT-style WordPiece tokenizer over `vocab`."""
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=100))
    tokenizer.normalizer = _normalizer()
    tokenizer.pre_tokenizer = _pre_tokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def train_wordpiece(texts: Iterable[str], vocab_size: int, max_length: int) -> Tokenizer:
    """The LSTM's tokenizer, learned from the training texts ([PAD] is id 0)."""
    return prepare_for_encoding(wordpiece_tokenizer(build_wordpiece_vocab(texts, vocab_size)), max_length)


def prepare_for_encoding(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """Truncate to `max_length`, never pad: batches are padded to their own longest text."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def encode(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids per text, in one batched (multi-threaded Rust) call."""
    return [e.ids for e in tokenizer.encode_batch(texts)]


def pad_id(tokenizer: Tokenizer) -> int:
    for token in (PAD, "<pad>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return found
    return 0
