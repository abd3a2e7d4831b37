"""The forensics toolkit, usable as a library without the agent: transcripts and their
formats, incidents, and (as they land) model clients, edits, rollouts, detectors, the
ledger and statistics."""
