-- The batch plan a delivery row was made under (batch size, selection, format, layout):
-- scoring redrive refuses to mix plans. Databases made before it get the column here.
ALTER TABLE scoring_deliveries ADD COLUMN plan TEXT;
