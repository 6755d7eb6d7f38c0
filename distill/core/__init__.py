"""Foundation: errors, file I/O, row schema, typed config, console, prompt rendering, plotting. Imports nothing above it."""
