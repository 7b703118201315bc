"""Model backends: ``embedded`` (llama.cpp in-process), ``openai`` (any OpenAI-compatible
endpoint) and ``simulated`` (a seeded stand-in policy); ``base`` says what they share."""
