"""Translation between OpenAI chat completions and Anthropic messages."""
