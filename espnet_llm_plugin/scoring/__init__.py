"""Scoring: word/character error rates with substitution, deletion and insertion counts."""
