-- Each collection's landmark share threshold: the share of a query's landmarks over the overlap that must line
-- up beside the landmark count (0: the count alone decides, as before). SQLite runs the change and its record in
-- one transaction, so it is applied once.

ALTER TABLE collection_landmarks ADD COLUMN landmark_share_threshold REAL NOT NULL DEFAULT 0;
