"""The rule document: its format (model), how it is read (source, parse) and checked (check, load)."""
