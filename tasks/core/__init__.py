"""Records, on-disk formats, configuration, workspace and keys, the stage wrapper: what every layer shares; imports nothing above it."""
