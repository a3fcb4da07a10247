-- A recording's landmarks by time: a match counts the recording's landmarks over the span a query lies on (see
-- audiosearch/catalog/landmarks.py). The new index serves lookups by recording too, so it replaces the old one.

CREATE INDEX IF NOT EXISTS landmarks_audio_time ON landmarks (audio_id, time_ms);

DROP INDEX IF EXISTS landmarks_audio;
