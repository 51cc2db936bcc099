"""The leaf every layer may import: the error tree and the settings types. It imports nothing of ours."""
