"""Files: atomic writes, safetensors, ``.pt`` files read weights-only, checkpoints and tensor files."""
