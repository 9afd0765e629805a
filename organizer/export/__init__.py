"""Taking results out: XMP sidecars, folders, a portable ONNX model, the HTTP API, watching a folder."""
