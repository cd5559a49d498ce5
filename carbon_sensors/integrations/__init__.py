"""Carbon-aware training inside the frameworks people already use (Lightning, Hugging Face, MLflow)."""
