"""Corpus expansion with the tool models (local or Ray), with the paper's cleaning."""
