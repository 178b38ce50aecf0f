"""Shared pytest setup (keep minimal; shared helpers live in tests/helpers.py)."""
import sys
from pathlib import Path

# tests import their shared helpers as `helpers`, whatever pytest's import mode
sys.path.insert(0, str(Path(__file__).resolve().parent))
