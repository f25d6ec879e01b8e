"""hf-run-job: run one Hugging Face inference from any trigger, return the uniform envelope."""

__version__ = "0.1.0"
