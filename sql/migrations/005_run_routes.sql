-- Cascade inference (issue 14): the per-route counts of a cascade's attempt, as JSON
-- {"router", "kept", "unrouted", "routes": {value: {"model", "rows", "scored", "quarantined"}}}; NULL otherwise.
ALTER TABLE scoring_runs ADD COLUMN routes {json};
