# Base image for every KFP component (and, later, the KServe predictor).
# Build: docker build -t <registry>/llarapp:0.1.0 . && docker push <registry>/llarapp:0.1.0
# Then compile the pipeline against it: LLARAPP_IMAGE=<registry>/llarapp:0.1.0 llarapp pipeline compile
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /opt/llarapp

# Dependencies first, so code changes do not invalidate this layer.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p llarapp components pipelines \
    && touch llarapp/__init__.py components/__init__.py pipelines/__init__.py \
    && pip install -c constraints.txt "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    && pip install -c constraints.txt .

COPY llarapp ./llarapp
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-deps -c constraints.txt . && llarapp --help >/dev/null \
    && python -m llarapp.llara.smollm2 install \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin llarapp

# Not root: a component writes only its outputs, /tmp and $HOME (caches)
USER 1000
ENV HOME=/home/llarapp
ENTRYPOINT []
