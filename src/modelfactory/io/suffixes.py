"""Which files are PyTorch (``torch.save``) files: by suffix; anything else is safetensors."""

TORCH_SUFFIXES = (".pt", ".pth")
