# Source this to build by hand: the torch venv (PyPI torch==2.11.0) that burn-tch links against.
export FB_VENV="${FB_VENV:-$HOME/.cache/fashionbert/venv-torch-2.11.0}"
export PATH="$FB_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1
