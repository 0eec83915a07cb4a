"""Names shared by the file modules: PyTorch file suffixes, and the checksum's metadata key."""

TORCH_SUFFIXES = (".pt", ".pth")

# The safetensors metadata key of a checkpoint's data checksum (see safetensors_file).
CHECKSUM_KEY = "modelfactory.checksum"
