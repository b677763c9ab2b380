-- The second house (issue 26): the seconds of each part of a step (the challengers' shadow, a cascade's
-- route, each route's validate/router_flags/preprocess/score, merge_routes), as JSON by label:
-- {"shadow": 1.21, "route": 0.3, "score[route frequent]": 2.1, ...}; a sharded run's are the slowest
-- shard's per label, like stage_seconds. A part's time is also inside its step's entry of stage_seconds.
ALTER TABLE scoring_runs ADD COLUMN part_seconds {json};
