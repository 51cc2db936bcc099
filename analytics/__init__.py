"""Analytics: detectors, NAB evaluation, and the `detect` / `eval nab` commands (imports nothing here)."""
