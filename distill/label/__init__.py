"""Method steps 1-3: chunk the corpus, stage-1 (genre, audience) pairs, stage-2 rewrites."""
