"""Quantized export of the tool models (GPTQ 4/8-bit via GPTQModel, W8A8 via llm-compressor) and its check."""
