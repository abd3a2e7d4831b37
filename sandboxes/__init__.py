"""Where the subject's actions run: the sandbox backends (Docker, local) and image
building without a registry. Knows nothing about LLMs."""
