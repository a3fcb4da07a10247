-- Landmarks (hashes of spectral peak pairs) of each recording, looked up by hash within a collection, and
-- each collection's landmark threshold (a collection without a row has the default).

CREATE TABLE IF NOT EXISTS landmarks (
  collection VARCHAR(63) NOT NULL,
  hash INT UNSIGNED NOT NULL,
  audio_id CHAR(32) NOT NULL,
  time_ms INT NOT NULL,
  KEY landmarks_lookup (collection, hash),
  KEY landmarks_audio (audio_id),
  CONSTRAINT landmarks_audio_fk FOREIGN KEY (audio_id) REFERENCES audio (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS collection_landmarks (
  collection VARCHAR(63) NOT NULL,
  landmark_threshold INT NOT NULL,
  PRIMARY KEY (collection),
  CONSTRAINT collection_landmarks_fk FOREIGN KEY (collection) REFERENCES collections (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
