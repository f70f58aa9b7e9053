"""bertrt exporter: Hugging Face checkpoint -> optimized, int8-quantized, validated ONNX bundle."""
