-- Collections, recordings, segments, and the tag and metadata rows that filters and statistics read.
-- Strings compared for equality on behalf of callers (tag labels, metadata) are VARBINARY: exact bytes,
-- no case folding and no trailing-space padding, whatever the server's collations.

CREATE TABLE IF NOT EXISTS collections (
  name VARCHAR(63) NOT NULL,
  description TEXT NOT NULL,
  model_name VARCHAR(128) NOT NULL,
  model_version VARCHAR(256) NOT NULL,
  embedding_dim INT NOT NULL,
  sample_rate_hz INT NOT NULL,
  untrained BOOLEAN NOT NULL,
  window_seconds DOUBLE NOT NULL,
  hop_seconds DOUBLE NOT NULL,
  score_threshold DOUBLE NOT NULL,
  threshold_source VARCHAR(1024) NOT NULL,
  create_time_us BIGINT NOT NULL,
  PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS audio (
  seq BIGINT NOT NULL AUTO_INCREMENT,
  id CHAR(32) NOT NULL,
  collection VARCHAR(63) NOT NULL,
  name VARCHAR(512) NOT NULL,
  sha256 CHAR(64) NOT NULL,
  duration_seconds DOUBLE NOT NULL,
  sample_rate_hz INT NOT NULL,
  channels INT NOT NULL,
  codec VARCHAR(64) NOT NULL,
  size_bytes BIGINT NOT NULL,
  metadata_json MEDIUMTEXT NOT NULL,
  tags_json MEDIUMTEXT NOT NULL,
  status VARCHAR(16) NOT NULL,
  segment_count INT NOT NULL,
  create_time_us BIGINT NOT NULL,
  update_time_us BIGINT NOT NULL,
  PRIMARY KEY (seq),
  UNIQUE KEY audio_id (id),
  UNIQUE KEY audio_collection_sha256 (collection, sha256),
  KEY audio_collection_status (collection, status, seq),
  KEY audio_status_update_time (status, update_time_us),
  CONSTRAINT audio_collection_fk FOREIGN KEY (collection) REFERENCES collections (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS segments (
  segment_id BIGINT NOT NULL,
  audio_id CHAR(32) NOT NULL,
  idx INT NOT NULL,
  start_s DOUBLE NOT NULL,
  end_s DOUBLE NOT NULL,
  tags_json MEDIUMTEXT NOT NULL,
  PRIMARY KEY (segment_id),
  UNIQUE KEY segments_audio_idx (audio_id, idx),
  CONSTRAINT segments_audio_fk FOREIGN KEY (audio_id) REFERENCES audio (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS audio_tags (
  audio_id CHAR(32) NOT NULL,
  label VARBINARY(1024) NOT NULL,
  score DOUBLE NOT NULL,
  PRIMARY KEY (audio_id, label),
  KEY audio_tags_label (label, audio_id),
  CONSTRAINT audio_tags_audio_fk FOREIGN KEY (audio_id) REFERENCES audio (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS audio_metadata (
  audio_id CHAR(32) NOT NULL,
  meta_key VARBINARY(512) NOT NULL,
  meta_value VARBINARY(4096) NOT NULL,
  PRIMARY KEY (audio_id, meta_key),
  KEY audio_metadata_key_value (meta_key, meta_value(255)),
  CONSTRAINT audio_metadata_audio_fk FOREIGN KEY (audio_id) REFERENCES audio (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
