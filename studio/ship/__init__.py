"""Shipping a trained model elsewhere: GGUF (convert, quantise, verify), an Ollama
Modelfile, and an OpenAI-compatible server on the studio's own inference.

Every module here imports torch/transformers/llama_cpp inside functions: the UI may
import the names without paying for them."""
