"""bertrt runtime: ONNX inference for BERT-family encoders with numpy, tokenizers and onnxruntime only."""
