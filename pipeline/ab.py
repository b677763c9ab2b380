"""A/B by rule: a job's live traffic split between its champion and other versions (``model.split``).

The run pins the arms when it starts (``pin``): each arm's reference resolved to a version, its contract
checked against the champion's (``kernels.arms.contract_differences``: a split over versions with different
contracts is refused, the run fails before it reads a row). An arm that does not resolve is pinned with its
error: its rows fall back to the champion (a ledger warning and a metric), the run goes on. The online door
pins the same way, so an entity gets the same arm in both (``kernels.arms``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline import redact
from pipeline.errors import ConfigError, ScoringError
from pipeline.kernels.arms import CHAMPION, contract_differences
from pipeline.model import ModelVersion
from pipeline.resolve import Models


@dataclass(frozen=True)
class Arm:
    """One arm of a split: its name (the reference in ``model.split``), the version it resolved to (None: it did
    not resolve, ``error`` says why, and its rows fall back to the champion) and its share in basis points."""

    name: str
    version: int | None
    basis_points: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def salt(job: Any) -> str:
    """The assignment's salt: ``model.split_salt``, else the job id."""
    return job.model.split_salt or job.job_id


def split_of(arms: list[Arm]) -> list[tuple[str, int]]:
    """``[(arm, basis points), ...]`` for ``kernels.arms.assign``, in the split's order."""
    return [(arm.name, arm.basis_points) for arm in arms]


def pin(job: Any, models: Models, champion: ModelVersion) -> list[Arm]:
    """The job's arms resolved now, for the whole run (or the door's model generation).

    Raises ``ConfigError`` when an arm's version has another contract than the champion's, or is the champion's
    own version; an arm that does not resolve (or whose card fails its anchor) is kept with its error."""
    arms = []
    for ref, basis_points in job.model.split_basis_points():
        try:
            mv = models.resolve(job.model.name, ref)
        except ScoringError as exc:
            arms.append(Arm(ref, None, basis_points, redact.redact(str(exc))))
            continue
        if mv.version == champion.version:
            raise ConfigError(f"job {job.job_id}: model.split arm {ref!r} is {mv.name} v{mv.version}, the champion "
                              f"itself ({job.model.ref!r}): point the arm at another version, or remove it from "
                              "model.split")
        differences = contract_differences(champion.card, mv.card)
        if differences:
            raise ConfigError(f"job {job.job_id}: model.split arm {ref!r} is {mv.name} v{mv.version}, whose contract "
                              f"differs from the champion v{champion.version}'s: " + "; ".join(differences)
                              + ". A split needs versions with the same contract: compare this one in the "
                              "shadow (model.challengers) instead, or register it with the champion's contract.")
        arms.append(Arm(ref, int(mv.version), basis_points))
    return arms


__all__ = ["CHAMPION", "Arm", "pin", "salt", "split_of"]
