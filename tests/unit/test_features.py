"""Monitoring features: derived numbers only, the same for server and pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from textclf.core.features import (
    FEATURES,
    WordListStats,
    WordPieceStats,
    char_counts,
    probability_features,
    text_features,
    token_counts,
)


def wordpiece(vocab: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def test_probability_features_are_confidence_margin_entropy_and_class() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    f = probability_features(probs)
    assert f["confidence"] == pytest.approx([0.7, 1 / 3])
    assert f["margin"] == pytest.approx([0.5, 0.0])
    assert f["entropy"] == pytest.approx(
        [-(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)), np.log(3)]
    )
    assert list(f["predicted_index"]) == [0, 0]


def test_wordpiece_oov_counts_unknown_and_split_words() -> None:
    tokenizer = wordpiece(["[UNK]", "card", "lost", "my", "bro", "##ken"])
    texts = ["lost my card", "broken card", "xyz card", "🍮"]
    tokens, oov = WordPieceStats(0)(texts, tokenizer.encode_batch(texts))
    assert list(tokens) == [3, 3, 2, 1]
    assert list(oov) == pytest.approx([0.0, 0.5, 0.5, 1.0])


def test_word_list_oov_matches_the_vectorizer_words_on_any_unicode() -> None:
    stats = WordListStats(["crème", "brûlée", "card", "карта"])
    texts = ["Crème brûlée card", "моя карта", "🍮🍮", "a"]
    tokens, oov = stats(texts, None)
    assert list(tokens) == [3, 2, 0, 0]  # one-letter words are not words to scikit-learn either
    assert list(oov) == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert np.isnan(WordListStats(None)(texts, None)[1]).all()  # no vocabulary shipped: unknown


def test_text_features_never_hold_the_text() -> None:
    texts = ["lost my card", "secret words here"]
    probs = np.array([[0.9, 0.1], [0.4, 0.6]])
    columns = text_features(texts, probs, ["lost", "other"], WordListStats(["lost", "card"]))
    assert tuple(columns) == FEATURES
    assert list(columns["predicted"]) == ["lost", "other"]
    assert list(columns["chars"]) == [12, 17]
    assert not any(t in str(v.tolist()) for t in texts for v in columns.values())
    with pytest.raises(ValueError, match="2 texts but 1 rows"):
        text_features(texts, probs[:1], ["lost", "other"], WordListStats(None))


def test_sizes_count_characters_and_model_tokens() -> None:
    texts = ["where is my new card", "a", "🙂🙂"]
    chars, tokens = char_counts(texts), token_counts(texts, None)
    assert chars.tolist() == [20, 1, 2]
    words, _ = WordListStats(None)(texts, None)  # the same words the monitoring features count
    assert tokens.tolist() == words.tolist() == [5, 0, 0]

    class Encoding:
        def __init__(self, n: int):
            self.ids = list(range(n))

    assert token_counts(texts, [Encoding(7), Encoding(3), Encoding(4)]).tolist() == [7, 3, 4]
