"""The embedded backend: a GGUF model run in process through llama.cpp (llama-cpp-python).

- :mod:`models.llama.options`: :class:`~models.llama.options.LlamaOptions`, how to load a
  GGUF (context, offload, threads, KV cache, prompt lookup, warm start), in one value.
- :mod:`models.llama.backend`: :class:`~models.llama.backend.LlamaCppBackend`, one agent's
  model: a one-sequence :mod:`~models.llama.host` whose scheduler runs in the caller's thread;
  its parts ``_load`` (loading settings, the machine's GPU and cores), ``_fit`` (what fits in
  memory), ``_cpu_speed``, ``_tokens`` (text and tokens), ``_record`` (what the context
  holds), ``_lookup`` (prompt-lookup drafts), ``_batch`` (batched decoding on a context).
- :mod:`models.llama.gguf_file`: reading a GGUF's metadata without loading it.
- :mod:`models.llama.kv_state`: saving and restoring a session's KV state.
- :mod:`models.llama.host`: one model shared by several sessions (sequences of one context,
  each session a :class:`~models.base.Backend` of ``_session``; ``_host_scheduler`` holds the
  one decode loop and decides who runs, with ``_host_jobs`` (its data), ``_host_swap``
  (where KV states live), ``_host_batching`` (a step's batch) and ``_host_drafts`` (prompt
  lookup in a batch)), and :mod:`models.llama.host_server` serving it as an
  OpenAI-compatible ``/v1/completions`` on loopback.

Importing this package loads nothing; ``llama_cpp`` is imported by the modules that use it.
"""
