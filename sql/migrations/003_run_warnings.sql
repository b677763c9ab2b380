-- What a run wants a person to know although it succeeded (issue 11), e.g.
-- "drift_not_checked: model M vV has no training statistics"; several are joined with "; ".
ALTER TABLE scoring_runs ADD COLUMN warnings TEXT;
