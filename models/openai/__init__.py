"""The server backend: any OpenAI-compatible endpoint (llama-server, vLLM, SGLang, hosted).

- :mod:`models.openai.backend`: :class:`~models.openai.backend.OpenAIBackend`, completions
  or chat mode, strict mode, retries; :mod:`models.openai.options`:
  :class:`~models.openai.options.ServerOptions`, how to talk to the server, in one value.
- :mod:`models.openai._http` (requests, retries, errors), :mod:`models.openai.sse` (the
  event stream), :mod:`models.openai._chat` (ChatML read back into chat messages),
  :mod:`models.openai._usage` (counters from the server or estimated),
  :mod:`models.openai._support` (what a server supports).

Importing this package loads nothing; httpx is imported by the modules that use it.
"""
