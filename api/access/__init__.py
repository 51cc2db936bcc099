"""People and machines that may call the API: API keys, users and their sessions, login rate limits."""
