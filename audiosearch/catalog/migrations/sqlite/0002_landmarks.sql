-- Landmarks (hashes of spectral peak pairs) of each recording, looked up by hash within a collection, and
-- each collection's landmark threshold (a collection without a row has the default).

CREATE TABLE IF NOT EXISTS landmarks (
  collection TEXT NOT NULL,
  hash INTEGER NOT NULL,
  audio_id TEXT NOT NULL REFERENCES audio (id),
  time_ms INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS landmarks_lookup ON landmarks (collection, hash);

CREATE INDEX IF NOT EXISTS landmarks_audio ON landmarks (audio_id);

CREATE TABLE IF NOT EXISTS collection_landmarks (
  collection TEXT NOT NULL PRIMARY KEY REFERENCES collections (name),
  landmark_threshold INTEGER NOT NULL
);
