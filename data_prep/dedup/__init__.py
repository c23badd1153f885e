"""Duplicate removal: exact (digest of the cleaned text) and near (MinHash signatures, LSH)."""
