"""The language-pack tooling: `mga language new` (`scaffold.py`) and `mga language check` (`check.py`).

It sits in the method-steps layer, not beside `mga.distill.core.language` in the foundation: reading a pack is
something every layer does, but checking one uses the judge's segmenter and reference sets (`mga.judge`), which
the foundation may not import."""
