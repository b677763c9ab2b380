"""The churn demo: one user of the pipeline among many.

Its data generator (``data``), model training (``train``), feature transformations
(``transforms``, found by the core through an entry point), the webhook receiver that
stands in for a promotions engine and serves as the tests' real HTTP peer (``receiver``),
and its command line (``cli``, ``scoring-demo``). The core package never imports this
folder; it would work unchanged without it.
"""
