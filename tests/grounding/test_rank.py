"""``PassageIndex.rank``: the order of a full sort of ``scores``, however much of it a caller reads, and the
same floats in every process."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys

import pytest

from twin_server.grounding.passages import Passage
from twin_server.grounding.retrieval import PassageIndex

#: Zipf-like: "w0" is in nearly every passage, "w1" in most, the later ones in fewer and fewer.
VOCABULARY = [f"w{k}" for k in range(60)]


def index_of(texts: list[str]) -> PassageIndex:
    return PassageIndex([Passage(f"p{i}", "", text, "p.md", order=i) for i, text in enumerate(texts)])


def sorted_by_score(index: PassageIndex, weights: dict[str, float], start: int = 0) -> list[tuple[float, int]]:
    """What ``rank`` promises, the slow way: every score, sorted, then the unmatched in order."""
    scores = index.scores(weights)
    matched = sorted(((-v, i) for i, v in scores.items() if i >= start))
    return [(-v, i) for v, i in matched] + [(0.0, i) for i in range(start, len(index.passages)) if i not in scores]


@pytest.fixture(scope="module")
def zipf_index() -> PassageIndex:
    rng = random.Random(5)
    weights = [1 / (k + 1) ** 0.8 for k in range(len(VOCABULARY))]
    return index_of([" ".join(rng.choices(VOCABULARY, weights, k=rng.randint(3, 30))) for _ in range(400)])


def test_the_index_walks_words_held_by_many_passages(zipf_index):
    longest = max(zipf_index.SHORT, len(zipf_index.passages) * zipf_index.LONG)
    walked = [t for t in VOCABULARY[:8] if len(zipf_index.holding([t])) > longest]
    assert len(walked) >= 3 and zipf_index.idf(walked[-1]) >= zipf_index.COMMON_IDF


@pytest.mark.parametrize("common", [1, 2, 4])
def test_rank_is_the_full_sort_of_the_scores_with_common_words_walked(zipf_index, common):
    rng = random.Random(common)
    for _ in range(40):
        words = VOCABULARY[1:1 + common] + rng.sample(VOCABULARY[common + 1:], rng.randint(0, 4))
        weights = {w: rng.choice((1.0, 0.8, 0.4, 0.2, 0.1)) for w in rng.sample(words, len(words))}
        start = rng.choice((0, 0, 17))
        assert list(zipf_index.rank(weights, start)) == sorted_by_score(zipf_index, weights, start)


def test_the_first_few_are_the_first_few_of_the_full_sort(zipf_index):
    weights = {"w1": 0.4, "w2": 1.0, "w30": 1.0}
    expected = sorted_by_score(zipf_index, weights)
    for n in (1, 5, 30):
        assert list(itertools.islice(zipf_index.rank(weights), n)) == expected[:n]


def test_an_exact_tie_with_a_passage_not_read_yet_goes_to_the_earlier_one():
    # "kelp" passages all score the same; the last ones' other word weighs nothing, so they are scored
    # up front and tie the ones the walk has not reached: position decides, as in a sort.
    index = index_of(["kelp sonar"] * 60 + ["mud sonar"] * 30 + ["kelp rust"] * 3)
    weights = {"kelp": 1.0, "rust": 0.0}
    assert len(index.holding(["kelp"])) > max(index.SHORT, len(index.passages) * index.LONG)
    assert index.idf("kelp") >= index.COMMON_IDF
    ranked = list(index.rank(weights))
    assert ranked == sorted_by_score(index, weights)
    assert [i for _, i in ranked[:3]] == [0, 1, 2]


def test_words_in_every_passage_count_when_the_question_has_no_other():
    index = index_of(["sonar kelp"] * 70 + ["sonar sonar kelp"])
    assert index.idf("sonar") < index.COMMON_IDF
    assert list(index.rank({"sonar": 1.0, "kelp": 0.4}, start=5)) == sorted_by_score(
        index, {"sonar": 1.0, "kelp": 0.4}, start=5)
    assert next(index.rank({"sonar": 1.0}))[1] == 70


# A question whose synonyms make a group of several words: a set, iterated in the hash seed's order.
SEEDED = """
from twin_local.persona import FilesystemPersonaSource, example_persona_dir
from twin_server import persona_passages
from twin_server.grounding.query import query_weights
index = persona_passages(FilesystemPersonaSource(example_persona_dir()).load()).index
question = "Do you offer freelance work?"
print([repr(score) for score, _ in index.rank(query_weights(question))][:8])
added = []
scores = index.scores
index.scores = lambda weights: added.append(list(weights)) or scores(weights)
print(index.relevant(question), added)
"""


def test_scores_are_the_same_floats_in_every_process():
    # Each gunicorn worker has its own hash seed: terms added in a set's order made a score's last bit differ.
    found = {subprocess.run([sys.executable, "-c", SEEDED], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(4)}
    assert len(found) == 1
