# The project's verbs. `make run` and `make test` are all a newcomer needs (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STATE_DIR ?= var
APT_PACKAGES := ffmpeg libsndfile1 libjemalloc2 protobuf-compiler golang-go golang-google-grpc-dev golang-google-protobuf-dev \
	golang-goprotobuf-dev protoc-gen-go-grpc libgrpc-java protobuf-compiler-grpc-java-plugin libprotobuf-java \
	libnetty-java libperfmark-java libgoogle-gson-java libguava-java \
	libjsr305-java liberror-prone-java libgeronimo-annotation-1.3-spec-java golang-google-genproto-dev \
	golang-github-gogo-googleapis-dev chromium
BUF := build/tools/node_modules/.bin/buf
WEIGHTS := $(STATE_DIR)/models/Cnn14_mAP=0.431.pth
IMAGE_REGISTRY ?= audiosearch
IMAGE_TAG ?= dev
IMAGE_SERVICES := gateway embedder search catalog

.PHONY: help install system-deps run up down status test test-unit lint protos bench weights images lint-deploy clients web test-crash clean

help:
	@echo "make run      set up, start the suite on embedded defaults, ingest samples, show a search (Ctrl-C stops)"
	@echo "make up/down  start/stop the suite in the background (up returns when all four are healthy)"
	@echo "make test     unit + integration tests against real Triton, Milvus server and MySQL"
	@echo "make test-crash  kill -9 every service and server under load, then check consistency"
	@echo "make lint     ruff + buf lint;  make protos: regenerate stubs;  make bench: benchmarks"
	@echo "make web      HTTP API, /docs and the web page on http://127.0.0.1:8080 (after make up)"
	@echo "make weights  download the PANNs Cnn14 checkpoint (needs internet)"

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# A JDK or Node.js installed from outside Debian (e.g. nodesource's nodejs, which ships npm) already serves,
# and asking apt for Debian's own would conflict with it.
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done; \
	  command -v javac >/dev/null || echo default-jdk-headless; command -v npm >/dev/null || echo nodejs npm); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

$(BUF):
	npm install --silent --prefix build/tools @bufbuild/buf@1.50.0

run: install
	$(PY) -m devtools.suite run --state-dir $(STATE_DIR)

up: install
	$(PY) -m devtools.suite up --state-dir $(STATE_DIR)

down:
	$(PY) -m devtools.suite down --state-dir $(STATE_DIR)

web: install
	$(PY) -m audiosearch.web.server

status:
	$(PY) -m devtools.suite status --state-dir $(STATE_DIR)

test: install
	$(PY) -m pytest -q -ra --durations=15 -m "not crash"

test-crash: install
	$(PY) -m pytest -q -ra -m crash tests/crash

test-unit: install
	$(PY) -m pytest -q -m "not integration"

lint: install $(BUF)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint --config .hadolint.yaml services/*/Dockerfile
	cd protos && ../$(BUF) lint

protos: install
	PYTHON=$(PY) scripts/gen_protos.sh

bench: install
	$(PY) -m bench.quality
	$(PY) -m bench.throughput
	$(PY) -m bench.search_latency
	$(PY) -m bench.vector_scale --count 100000

weights: install
	$(PY) -m audiosearch.embedder.fetch_weights --output $(WEIGHTS)

images:
	@command -v docker >/dev/null || { echo "make images needs Docker with BuildKit"; exit 1; }
	for s in $(IMAGE_SERVICES); do \
	  DOCKER_BUILDKIT=1 docker build -f services/$$s/Dockerfile -t $(IMAGE_REGISTRY)/$$s:$(IMAGE_TAG) . || exit 1; \
	done

lint-deploy: install
	$(VENV)/bin/hadolint --config .hadolint.yaml services/*/Dockerfile
	$(PY) -m pytest -q tests/deploy

clients:
	scripts/build_clients.sh build/clients

clean:
	rm -rf build $(STATE_DIR)/logs
