"""Campaigns: one message to an audience of lists and segments, scheduled, throttled, A/B tested."""
