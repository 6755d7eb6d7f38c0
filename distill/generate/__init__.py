"""Generation clients: the `Generator` protocol, the OpenAI-compatible teacher client (cache, rate limits, accounting) and the local SLM generator."""
