"""Tests for the prompts package."""
