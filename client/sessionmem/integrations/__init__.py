"""Faces of sessionmem where agents already work, each behind an optional extra:
``openai_agents`` (``sessionmem[openai-agents]``), ``mcp`` (``sessionmem[mcp]``) and ``adk``
(``sessionmem[adk]``: Google ADK's session service)."""
