"""Decoding-time additions to ESPnet's beam search (extra scorers, a Speech2Text that adds them)."""
