"""Method step 5: SFT of the tool models with TRL (+ PEFT), their data, tokenizer checks and tiny local students."""
