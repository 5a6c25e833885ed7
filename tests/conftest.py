import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/ray-distill/torch_extensions"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray Train's preemption watcher is one more actor process per fit (Ray imported, polling every 5 s) that only
# matters on spot nodes; no test preempts a node. Ray Train passes this to its controller.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
