"""Grounded answers within a token budget: the persona as passages, retrieval, the budget, summaries.

``tokens``    how many tokens a text takes (the backend's ``count_tokens``, else a conservative estimate)
``passages``  the persona cut into passages with stable ids and titles (core facts and knowledge)
``query``     a question's terms: stems, synonyms, and their weights with the recent turns' words
``retrieval`` BM25 over a persona's passages, built once per persona object
``budget``    the arithmetic of what fits in ``TWIN_CONTEXT_TOKENS`` and what is cut, in which order
``context``   a turn's system prompt, history and sources, put together inside the budget
``summary``   the rolling summary of what fell out of the window, made after the turn
"""
