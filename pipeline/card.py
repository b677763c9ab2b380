"""The model card: its published schema, and the checks registration makes before a version exists.

A card (``models/<name>/v<N>/card.json``) says what the model reads (the input contract:
columns, types, nullability, ranges, categories, blank-text policy, missing-value texts), how its features are
made (the preprocessing's name, version, module and code fingerprint), what it predicts
(task, classes, positive class), the training statistics drift compares against, metrics,
library versions and the artifact's sha256. ``pipeline/card.schema.json`` is the published
JSON schema (``scoring models schema``).

Bounds come in two kinds. ``min``/``max`` are *declared* (a hand-written card, an override at
registration, any card written before ``observed_min`` existed): a row outside them is
quarantined. ``observed_min``/``observed_max`` are what registration saw in the training
frame: a row outside them is scored and flagged ``out_of_training_range:<col>``. The same for
categories: a category column whose estimator scores unknown values itself
(``handles_unknown``, detected at registration) flags them instead of quarantining them. Registration refuses a card that does not validate,
or that disagrees with its artifact, with a message naming the key and the fix.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.config import RESERVED_INPUT_NAMES, check_column_name
from pipeline.errors import ConfigError, ModelIntegrityError

COLUMN_TYPES = ("float", "int", "category", "bool")
TASKS = ("binary_classification", "multiclass_classification", "regression")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
Label = int | float | str | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputColumn(_Strict):
    """One column of the input contract."""

    name: str = Field(..., min_length=1, description="Column name as the partition's files have it (any case).")
    type: Literal["float", "int", "category", "bool"] = Field(..., description="float | int | category | bool.")
    nullable: bool = Field(True, description="Whether a missing value is allowed (false: such rows are quarantined).")
    min: float | None = Field(None, description="Smallest allowed value (numeric columns), declared: a row below it "
                                                 "is quarantined (be_between:<col>).")
    max: float | None = Field(None, description="Largest allowed value (numeric columns), declared: a row above it "
                                                 "is quarantined (be_between:<col>).")
    observed_min: float | None = Field(None, description="Smallest value of the training data (numeric columns; "
                                                          "recorded at registration): a row below it is scored and "
                                                          "flagged out_of_training_range:<col>.")
    observed_max: float | None = Field(None, description="Largest value of the training data (numeric columns; "
                                                          "recorded at registration): a row above it is scored and "
                                                          "flagged out_of_training_range:<col>.")
    categories: list[str] | None = Field(None, description="Allowed values (category columns); others are unknown.")
    handles_unknown: bool = Field(False, description="Category columns: the estimator scores a category it never "
                                                     "saw (recorded at registration), so such a row is scored and "
                                                     "flagged unknown_category:<col> instead of quarantined.")
    blank_is_missing: bool = Field(False, description="Numeric columns: blank or whitespace text means missing "
                                                      "(default: such text is an invalid number).")
    missing_values: list[str] | None = Field(None, description="CSV texts that mean missing in this column (recorded "
                                                               "at registration when the training data holds one of "
                                                               "the default markers, such as 'NA', as a real value). "
                                                               "The job's source.null_values_by_column wins.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:  # the rules every column name follows (the store quotes it)
            return check_column_name(value, "the column name", "Rename the column before training",
                                     reserved=RESERVED_INPUT_NAMES)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _fits_type(self) -> InputColumn:
        numeric = self.type in ("float", "int")
        bounds = (self.min, self.max, self.observed_min, self.observed_max)
        if not numeric and (any(b is not None for b in bounds) or self.blank_is_missing):
            raise ValueError(f"column {self.name!r}: min, max, observed_min, observed_max and blank_is_missing are "
                             "for float/int columns")
        if self.categories is not None and self.type != "category":
            raise ValueError(f"column {self.name!r}: categories are for category columns")
        if self.handles_unknown and self.type != "category":
            raise ValueError(f"column {self.name!r}: handles_unknown is for category columns")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} is above max {self.max}")
        if self.observed_min is not None and self.observed_max is not None and self.observed_min > self.observed_max:
            raise ValueError(f"column {self.name!r}: observed_min {self.observed_min} is above observed_max "
                             f"{self.observed_max}")
        if self.categories is not None and len(set(self.categories)) != len(self.categories):
            raise ValueError(f"column {self.name!r}: categories repeat a value")
        return self


class PreprocessRef(_Strict):
    """The feature transformation the model was trained with."""

    name: str = Field("identity", description="Registered transform name.")
    version: int = Field(1, ge=1, description="Its version.")
    fingerprint: str | None = Field(None, description="sha256 of its source code at training time.")
    module: str | None = Field(None, description="Module that registers it (imported on first use), "
                                                 "e.g. 'acme.features'.")

    @field_validator("module")
    @classmethod
    def _module(cls, value: str | None) -> str | None:
        if value is not None and not MODULE_RE.match(value):
            raise ValueError("must be an importable module path such as 'acme.features' (no file paths)")
        return value


class NumericStats(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: Literal["numeric"] = "numeric"
    bin_edges: list[float]
    bin_shares: list[float]
    null_share: float | None = None

    @model_validator(mode="after")
    def _bins(self) -> NumericStats:
        if len(self.bin_edges) >= 2 and len(self.bin_shares) != len(self.bin_edges) - 1:
            raise ValueError("bin_shares needs one share per bin (len(bin_edges) - 1)")
        return self


class CategoricalStats(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: Literal["categorical"] = "categorical"
    shares: dict[str, float]
    null_share: float | None = None


class Training(BaseModel):
    """Where the model was trained and the statistics drift compares against."""

    model_config = ConfigDict(extra="allow")
    data: str | None = None
    rows: int | None = None
    label: str | None = None
    stats: dict[str, Annotated[NumericStats | CategoricalStats, Field(discriminator="kind")]] = {}
    score_stats: NumericStats | None = None
    prediction_shares: dict[str, float] | None = None


class ModelCard(_Strict):
    """A model version's card (``card.json``)."""

    name: str | None = Field(None, description="Set by the registry.")
    version: int | None = Field(None, description="Set by the registry.")
    sha256: str | None = Field(None, description="Set by the registry: the artifact's sha256.")
    registered_at: str | None = Field(None, description="Set by the registry.")
    description: str = ""
    task: Literal["binary_classification", "multiclass_classification", "regression"] | None = None
    classes: list[Label] | None = Field(None, description="The estimator's classes_, in order.")
    positive_class: Label | None = Field(None, description="Binary classifiers: the class whose probability is "
                                                           "the score (default: the last class).")
    entity_key: str | None = Field(None, description="The entity key of the training data (informational).")
    entity_key_type: Literal["string", "integer"] | None = Field(
        None, description="How the entity key is read from a CSV (recorded at registration from the training "
                          "data's key: integer dtypes -> integer, else string; the job's entity_key_type wins; "
                          "neither: string, so 00123 stays 00123).")
    inputs: list[InputColumn] = Field(..., min_length=1, description="The input contract.")
    features: dict[str, Any] | None = None
    preprocess: PreprocessRef = PreprocessRef()
    output: dict[str, str] | None = None
    training: Training | None = None
    metrics: dict[str, Any] = {}
    library_versions: dict[str, str] = {}
    sklearn_version: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        names = [c.name for c in self.inputs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"inputs: column(s) {', '.join(map(repr, repeated))} appear more than once")
        if self.classes is not None and self.positive_class is not None and self.positive_class not in self.classes:
            raise ValueError(f"positive_class {self.positive_class!r} is not one of classes {self.classes}")
        unknown = sorted(set(self.training.stats if self.training else {}) - set(names))
        if unknown:
            raise ValueError(f"training.stats names column(s) {', '.join(map(repr, unknown))} that are not inputs")
        return self


def parse(card: Any, where: str = "model card") -> dict[str, Any]:
    """Validate a card; return it as a dict (unknown keys, wrong types and missing keys refused, named)."""
    if not isinstance(card, dict):
        raise ModelIntegrityError(f"{where}: a model card is a JSON object, got {type(card).__name__}")
    try:
        ModelCard.model_validate(card)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ModelIntegrityError(f"{where} is not valid (schema: pipeline/card.schema.json, "
                                  "`scoring models schema`):\n  " + "\n  ".join(lines)) from None
    return card


def _describe(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], allowed, n=1)
        return (f"unknown key {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" Allowed keys here: {', '.join(sorted(allowed))}")
    if err["type"] == "missing":
        return f"required key {key!r} is missing"
    if err["type"] == "literal_error" and loc[-1] == "type":
        return f"key {key!r}: {err.get('input')!r} is not a column type; use one of {', '.join(COLUMN_TYPES)}"
    return f"key {key!r}: {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})"


def _fields_at(loc: list[str]) -> list[str]:
    """The keys allowed at a location of the card (through lists and nested models)."""
    current: Any = ModelCard
    for part in loc:
        if part.isdigit():
            continue
        field = current.model_fields.get(part)
        if field is None:
            break
        inner = [a for a in (field.annotation, *typing.get_args(field.annotation))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            break
        current = inner[0]
    return list(current.model_fields)


def card_json_schema() -> dict[str, Any]:
    """JSON schema of a model card."""
    schema = ModelCard.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Scoring model card"
    return schema
