# The online API (thinkalike_ml.server) in a slim image: locked requirements, a non-root user, a healthcheck on
# /health, uvicorn (one worker) as the entry point. The model is baked in (MODEL_RUN: a run folder, copied to
# /srv/model) or resolved at start from the registry (-e THINKALIKE_MODEL=matcher@champion -e MLFLOW_TRACKING_URI=...).
#   docker build -t thinkalike-serving --build-arg MODEL_RUN=reports/<run id> .
#   docker run --rm -p 8000:8000 -e THINKALIKE_API_TOKEN=<secret> thinkalike-serving
# tests/test_serving.py::test_the_dockerfiles_commands_build_and_serve runs these commands outside a container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

WORKDIR /app
COPY requirements.lock settings.ini setup.py README.md ./
COPY thinkalike_ml ./thinkalike_ml
RUN python -m pip install -c requirements.lock .

ARG MODEL_RUN=model
COPY ${MODEL_RUN} /srv/model

RUN groupadd --gid 10001 thinkalike && useradd --uid 10001 --gid 10001 --create-home thinkalike
USER 10001:10001
ENV THINKALIKE_MODEL=/srv/model

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
ENTRYPOINT ["python", "-m", "thinkalike_ml.server", "--host", "0.0.0.0", "--port", "8000"]
