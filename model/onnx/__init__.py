"""ONNX export of transformers models with their attention maps, hidden states and LM head.

    export.py    export_onnx: the files, checked in onnxruntime before anything is put in place
    wrappers.py  the torch modules that are traced (model graph, LM head, generation with a key/value cache)
    trace.py     torch.onnx tracing of those modules
    parity.py    sample inputs, and onnxruntime against torch on them
    fp16.py      float16 weight storage

The onnxruntime backend that loads the result is model.backends.onnx_backend; docs/onnx.md describes both.
"""
