-- Each collection's landmark share threshold: the share of a query's landmarks over the overlap that must line
-- up beside the landmark count (0: the count alone decides, as before). MySQL commits DDL as it goes, so the
-- column is added only where it is missing (MySQL has no ADD COLUMN IF NOT EXISTS): a statement chosen from
-- information_schema, prepared and run.

SET @add_landmark_share = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE collection_landmarks ADD COLUMN landmark_share_threshold DOUBLE NOT NULL DEFAULT 0', 'DO 0') FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'collection_landmarks' AND column_name = 'landmark_share_threshold');

PREPARE add_landmark_share FROM @add_landmark_share;

EXECUTE add_landmark_share;

DEALLOCATE PREPARE add_landmark_share
