"""Messages: templates, the one renderer, personalisation, pre-send checks and tracking links."""
