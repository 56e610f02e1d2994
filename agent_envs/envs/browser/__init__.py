"""The browser environment family: gpt-oss's built-in browsing tool, offline and live."""

from __future__ import annotations
