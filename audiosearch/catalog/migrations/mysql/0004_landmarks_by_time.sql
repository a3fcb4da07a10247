-- A recording's landmarks by time: a match counts the recording's landmarks over the span a query lies on (see
-- audiosearch/catalog/landmarks.py). The new index serves lookups by recording and the foreign key too, so it
-- replaces the old one. MySQL commits DDL as it goes and has no CREATE INDEX IF NOT EXISTS: each change is a
-- statement chosen from information_schema, prepared and run, so that running this again changes nothing.

SET @add_index = (SELECT IF(COUNT(*) = 0, 'CREATE INDEX landmarks_audio_time ON landmarks (audio_id, time_ms)', 'DO 0') FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'landmarks' AND index_name = 'landmarks_audio_time');

PREPARE add_index FROM @add_index;

EXECUTE add_index;

DEALLOCATE PREPARE add_index;

SET @drop_index = (SELECT IF(COUNT(*) > 0, 'DROP INDEX landmarks_audio ON landmarks', 'DO 0') FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'landmarks' AND index_name = 'landmarks_audio');

PREPARE drop_index FROM @drop_index;

EXECUTE drop_index;

DEALLOCATE PREPARE drop_index
