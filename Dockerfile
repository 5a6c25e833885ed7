# The ray-distill image: the official Ray image with torch and the project's [train] install, so a KubeRay
# cluster (cluster/kuberay/) starts with everything and its runtime_env only ships the code (working_dir).
#
# CPU (serving, CPU-only clusters; the default):
#   docker build -t ghcr.io/YOUR-ORG/ray-distill:0.1.0-cpu .
# GPU (the RayJob's GPU workers): the Ray GPU image and a CUDA build of torch
#   docker build -t ghcr.io/YOUR-ORG/ray-distill:0.1.0-gpu \
#       --build-arg BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# BASE_IMAGE's Ray version must be rayVersion in the KubeRay manifests (python -m cluster.check
# checks it); torch must satisfy pyproject.toml (>=2.4,<=2.14.1).
ARG BASE_IMAGE=rayproject/ray:2.60.0-py311-cpu
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV TOKENIZERS_PARALLELISM=false \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from the index that matches the base image (CPU or CUDA), so the project's install keeps it
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# the project's dependencies before its code, so a code change does not re-install them (one layer each);
# the base image's ray stays (the project's range accepts it: ray[serve,data,train]>=2.50)
WORKDIR /home/ray/ray-distill
COPY --chown=ray:users pyproject.toml README.md ./
RUN mkdir -p distill serve && touch distill/__init__.py serve/__init__.py \
    && pip install ".[train]" \
    && pip uninstall -y ray-distill \
    && rm -rf distill serve build *.egg-info

# the project itself (a job's working_dir, unpacked into its cwd, still comes first on sys.path)
COPY --chown=ray:users distill ./distill
COPY --chown=ray:users serve ./serve
COPY --chown=ray:users configs ./configs
RUN pip install --no-deps . \
    && python -c "import torch, ray, distill, serve; print('torch', torch.__version__, 'ray', ray.__version__)" \
    && ray-distill --help > /dev/null

WORKDIR /home/ray
