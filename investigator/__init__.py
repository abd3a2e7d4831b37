"""investigator package."""
