-- Keys typed alike across tables (issue 24): the quarantine's entity_key is text (the raw value, kept
-- for every row), the predictions' key of an integer-keyed job is BIGINT. entity_key_int holds the
-- key as BIGINT where it parsed as one, so the two join without casts:
--   ... JOIN churn_predictions p ON p.customer_id = q.entity_key_int
-- New rows get it from persist (jobs whose key is an integer). Rows made before: set where the text
-- is an integer in canonical form (digits, no sign or leading zero, at most 18 of them).
ALTER TABLE scoring_quarantine ADD COLUMN entity_key_int BIGINT;
UPDATE scoring_quarantine
SET entity_key_int = CAST(entity_key AS BIGINT)
WHERE LENGTH(entity_key) BETWEEN 1 AND 18
  AND (entity_key = '0' OR SUBSTR(entity_key, 1, 1) <> '0')
  AND REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(
        entity_key, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', '') = '';
