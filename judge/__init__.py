"""The judge: Limited-Consistency scoring, stage-1 rule checks, filters and the SLM-versus-LLM reports."""
