"""The columns a staged batch carries beside the contract's: how ingest marks what it could not read, and the
flags validation adds. Below ingest (which writes them) and the kernels (which read them)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline.steps import FLAGS

ARROW_TYPES = {"float": pa.float64(), "int": pa.float64(), "category": pa.string(), "bool": pa.bool_()}
RAW_PREFIX = "__raw__"
# blank_is_missing columns: the original text of a blank value (it is null in its column and
# no __raw__ text is kept, so the row is scored); the quarantine puts it back if the row is
# rejected for another reason or because the contract says the column is not nullable
BLANK_PREFIX = "__blank__"
# a text column's value whose bytes are not valid UTF-8: the column holds the text with the bad
# bytes replaced (U+FFFD) and this binary column the original bytes (null elsewhere); validation
# quarantines the row (invalid_utf8:<column>) and original_values puts the bytes back
BADTEXT_PREFIX = "__badtext__"
REASONS = "reasons"  # a quarantined row's reason codes, "; "-joined
# CSV: the texts that mean a missing value by default: pandas' read_csv default na_values
# (pandas._libs.parsers.STR_NA_VALUES; tests/unit/test_ingest_text.py keeps them equal), so that
# the notebook that trained a model and the nightly run read a file the same way (ingest reads with
# them; onboarding infers a card's missing_values from them). The columns read are text, parsed in
# ingest, so a value far into a file never breaks Arrow's type guess from the first block.
DEFAULT_NULL_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")

__all__ = ["ARROW_TYPES", "BADTEXT_PREFIX", "BLANK_PREFIX", "DEFAULT_NULL_VALUES", "FLAGS", "RAW_PREFIX", "REASONS",
           "numeric_columns"]


def numeric_columns(inputs: list[dict[str, Any]]) -> list[str]:
    """The contract's columns read as numbers (ingest keeps the text of a bad one in ``__raw__<column>``)."""
    return [c["name"] for c in inputs if ARROW_TYPES[c["type"]] == pa.float64()]
