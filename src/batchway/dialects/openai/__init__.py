"""OpenAI's Files and Batches wire shapes, and its batch output lines."""
