"""The widgets of the chat: conversation, thinking blocks, tool cards, prompt, status bar."""
