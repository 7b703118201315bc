"""The rollout contract, in one place: task and rollout rows, JSONL I/O, file names and labels,
the one rollout reader, and the text of a response."""
