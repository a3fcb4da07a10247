-- Collections, recordings, segments, and the tag and metadata rows that filters and statistics read.
-- TEXT compares as exact bytes in SQLite (BINARY collation), like the VARBINARY columns in MySQL.

CREATE TABLE IF NOT EXISTS collections (
  name TEXT NOT NULL PRIMARY KEY,
  description TEXT NOT NULL,
  model_name TEXT NOT NULL,
  model_version TEXT NOT NULL,
  embedding_dim INTEGER NOT NULL,
  sample_rate_hz INTEGER NOT NULL,
  untrained INTEGER NOT NULL,
  window_seconds REAL NOT NULL,
  hop_seconds REAL NOT NULL,
  score_threshold REAL NOT NULL,
  threshold_source TEXT NOT NULL,
  create_time_us INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS audio (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  collection TEXT NOT NULL REFERENCES collections (name),
  name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  duration_seconds REAL NOT NULL,
  sample_rate_hz INTEGER NOT NULL,
  channels INTEGER NOT NULL,
  codec TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  metadata_json TEXT NOT NULL,
  tags_json TEXT NOT NULL,
  status TEXT NOT NULL,
  segment_count INTEGER NOT NULL,
  create_time_us INTEGER NOT NULL,
  update_time_us INTEGER NOT NULL,
  UNIQUE (collection, sha256)
);

CREATE INDEX IF NOT EXISTS audio_collection_status ON audio (collection, status, seq);

CREATE INDEX IF NOT EXISTS audio_status_update_time ON audio (status, update_time_us);

CREATE TABLE IF NOT EXISTS segments (
  segment_id INTEGER NOT NULL PRIMARY KEY,
  audio_id TEXT NOT NULL REFERENCES audio (id),
  idx INTEGER NOT NULL,
  start_s REAL NOT NULL,
  end_s REAL NOT NULL,
  tags_json TEXT NOT NULL,
  UNIQUE (audio_id, idx)
);

CREATE TABLE IF NOT EXISTS audio_tags (
  audio_id TEXT NOT NULL REFERENCES audio (id),
  label TEXT NOT NULL,
  score REAL NOT NULL,
  PRIMARY KEY (audio_id, label)
);

CREATE INDEX IF NOT EXISTS audio_tags_label ON audio_tags (label, audio_id);

CREATE TABLE IF NOT EXISTS audio_metadata (
  audio_id TEXT NOT NULL REFERENCES audio (id),
  meta_key TEXT NOT NULL,
  meta_value TEXT NOT NULL,
  PRIMARY KEY (audio_id, meta_key)
);

CREATE INDEX IF NOT EXISTS audio_metadata_key_value ON audio_metadata (meta_key, meta_value);
