"""The policy gate every message passes: consent, suppression, frequency caps, quiet hours."""
