"""Data stages: prepare_data (synthetic EmoSet or a real one's fingerprint), ingest, validate, balance."""
