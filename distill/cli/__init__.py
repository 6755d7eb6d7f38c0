"""The `mga` subcommands owned by `distill` (each a thin function over typed config)."""
