"""Evaluation: descriptor checks, compilation to durable-rules, firing, combining and explaining."""
