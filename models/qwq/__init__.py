"""The QwQ format in one place: what the model reads and writes.

- :mod:`models.qwq.tags`: the tag strings (``<think>``, ``<tool_call>``, ``<tool_response>``…).
- :mod:`models.qwq.chat_template`: rendering a chat template exactly as Hugging Face does,
  the tool declarations for templates without tool support, and the template shipped for
  QwQ-32B (``templates/qwq-32b.jinja``).
- :mod:`models.qwq.observations`: how tool results are wrapped and written back into the
  context (a user turn of ``<tool_response>`` blocks, or a block inside the thinking), made
  inert first.
- :mod:`models.qwq.grammar`: the GBNF grammar that forces a tool call (``tool_choice``).
"""
