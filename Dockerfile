# hf-run-job with `provider: local`, as an AWS Lambda container image: the job, a CPU build
# of torch, the [local] extra, and the models that the run configs run locally, downloaded
# into the image at build time (a function must not download models on a cold start).
#
#   make template-image && sam build -t build/template-image.json   (an x86_64 function), or
#   docker build --platform linux/amd64 -t hf-run-job-local .
#
# tests/test_image.py runs the RUN steps below in a fresh virtualenv against a pre-filled
# cache, and the handler in what they build.
FROM public.ecr.aws/lambda/python:3.12

# A CPU build of torch first, so that the extra finds it and pulls no CUDA packages.
ARG TORCH_PIP="torch --index-url https://download.pytorch.org/whl/cpu"
# Models are read from here; nothing is downloaded at run time.
ENV HF_HOME=/opt/huggingface \
    TOKENIZERS_PARALLELISM=false

WORKDIR ${LAMBDA_TASK_ROOT}
COPY pyproject.toml README.md handler.py ./
COPY function ./function
COPY run_config ./run_config

RUN pip install --no-cache-dir ${TORCH_PIP}
# The job's dependencies and the extra; the job itself runs from LAMBDA_TASK_ROOT.
RUN pip install --no-cache-dir ".[local]" && pip uninstall --yes hf-run-job
RUN python -m function fetch-models

ENV HF_HUB_OFFLINE=1
CMD ["handler.lambda_handler"]
