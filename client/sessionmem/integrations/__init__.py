"""Faces of sessionmem where agents already work, each behind an optional extra:
``openai_agents`` (``sessionmem[openai-agents]``) and ``mcp`` (``sessionmem[mcp]``)."""
