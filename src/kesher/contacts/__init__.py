"""Contacts, custom fields, lists, tags, consent, suppression and import."""
