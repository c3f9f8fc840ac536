"""Corpus preparation: real corpora (AN4, ...) and the embedded synthetic demo corpus."""
