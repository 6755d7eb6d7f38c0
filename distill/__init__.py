"""Distillation: generation clients, labeling, SFT, corpus expansion, the pipeline and the `mga` CLI."""
