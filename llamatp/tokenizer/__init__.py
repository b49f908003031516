"""Text to token ids and back, as llama.cpp does it, built from GGUF metadata."""

from llamatp.tokenizer.tokenizer import StreamDecoder, Tokenizer, print_token_pieces

__all__ = ["StreamDecoder", "Tokenizer", "print_token_pieces"]
