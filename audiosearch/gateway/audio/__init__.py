"""Signal processing: decoding untrusted bytes, levelling, cutting windows, landmark fingerprints, tags."""
