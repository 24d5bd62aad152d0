"""split_text cuts long replies at the most natural boundary that fits."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest

from alfred.outbound.split import split_text


def visible(text: str) -> str:
    """Drop whitespace: what must survive the split unchanged and in order."""
    return re.sub(r"\s", "", text)


def check(body: str, limit: int) -> list[str]:
    """Split and assert every invariant the sender relies on."""
    parts = split_text(body, limit)
    assert parts, "at least one part"
    assert all(0 < len(p) <= limit for p in parts), [len(p) for p in parts]
    assert "".join(visible(p) for p in parts) == visible(body)
    return parts


def test_short_text_is_returned_whole():
    assert split_text("hello  world\n\n", 4096) == ["hello  world\n\n"]
    assert split_text("x" * 4096) == ["x" * 4096]


def test_splits_at_paragraphs_first():
    a, b, c = "A" * 30 + ".", "B" * 30 + ".", "C" * 30 + "."
    parts = check(f"{a}\n\n{b}\n\n{c}", 70)
    assert parts == [f"{a}\n\n{b}", c]


def test_then_at_sentences():
    body = "One two three. Four five six! Seven eight nine? Ten."
    parts = check(body, 30)
    assert parts == ["One two three. Four five six!", "Seven eight nine? Ten."]


def test_line_breaks_count_as_sentence_boundaries():
    parts = check("- item one\n- item two\n- item three", 22)
    assert parts == ["- item one\n- item two", "- item three"]


def test_then_at_words():
    parts = check("alpha beta gamma delta epsilon", 12)
    assert parts == ["alpha beta", "gamma delta", "epsilon"]


def test_a_word_longer_than_the_limit_is_cut_hard():
    parts = check("short " + "x" * 25 + " tail", 10)
    assert parts == ["short", "x" * 10, "x" * 10, "x" * 5 + " tail"]


def test_combining_marks_stay_with_their_letter():
    word = "e\u0301" * 8  # é as e + combining acute, 16 code points
    parts = check(word, 5)
    assert not any(unicodedata.combining(p[0]) for p in parts)


def test_whitespace_only_runs_make_no_empty_parts():
    body = "word " + " " * 50 + "\n\n\n\n" + "word"
    assert check(body, 8) == ["word", "word"]


def test_emoji_and_accents_are_counted_as_python_characters():
    body = "😀 " * 3000
    parts = check(body, 4096)
    assert len(parts) == 2


def test_realistic_ai_reply_over_4096():
    paragraph = (
        "Here is what I found about your booking. The flight leaves at 09:40 from gate B12! "
        "Remember to bring your passport, and arrive two hours early? Thanks.\n"
    )
    body = "\n\n".join(paragraph * 4 for _ in range(12))
    assert len(body) > 4096
    parts = check(body, 4096)
    assert len(parts) >= 2
    assert all(p.endswith((".", "!", "?")) for p in parts)


@pytest.mark.parametrize("seed", range(40))
def test_random_texts_keep_every_invariant(seed):
    rng = random.Random(seed)
    alphabet = ["a", "bb", "ccc", "é", "😀", ".", "!", " ", " ", "\n", "\n\n", "\t", "x" * 40]
    body = "".join(rng.choice(alphabet) for _ in range(rng.randint(50, 600)))
    check(body, rng.choice([1, 2, 7, 20, 64]))


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        split_text("abc", 0)
