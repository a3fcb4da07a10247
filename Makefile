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
	golang-github-gogo-googleapis-dev chromium espeak-ng
BUF := build/tools/node_modules/.bin/buf
WEIGHTS := $(STATE_DIR)/models/Cnn14_mAP=0.431.pth
IMAGE_REGISTRY ?= audiosearch
IMAGE_TAG ?= dev
IMAGE_SERVICES := gateway embedder search catalog
DOCKERFILE := deploy/docker/Dockerfile

.PHONY: help install system-deps run up down status test test-unit lint protos bench dev-data weights images lint-deploy clients web test-crash clean

help:
	@echo "make run      set up, start the suite on embedded defaults, ingest samples, show a search (Ctrl-C stops)"
	@echo "make up/down  start/stop the suite in the background (up returns when all four are healthy)"
	@echo "make test     unit + integration tests against real Triton, Milvus server and MySQL"
	@echo "make install  what run and test do first: the missing Debian packages (apt, through sudo if needed), the venv"
	@echo "make test-crash  kill -9 every service and server under load, then check consistency"
	@echo "make lint     ruff + hadolint + buf lint;  make protos: regenerate stubs"
	@echo "make bench    benchmarks on real sounds (make dev-data fetches them to /tmp/dev-sounds, /tmp/dev-music)"
	@echo "make images   the four service images from $(DOCKERFILE) (BuildKit);  make lint-deploy: check them"
	@echo "make web      HTTP API, /docs and the web page on http://127.0.0.1:8080 (after make up)"
	@echo "make weights  download the PANNs Cnn14 checkpoint (needs internet)"

# system-deps first: on Debian, Python's venv module is a package of its own (python3.11-venv).
$(VENV)/.installed: pyproject.toml requirements.lock | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: system-deps $(VENV)/.installed

# Every install checks the Debian packages and installs only the missing ones, so that `make run` and `make test`
# work on a fresh machine; where all are present the check is one dpkg query. apt-get runs as root, through
# sudo when make does not run as root. A JDK or Node.js installed from outside Debian (e.g. nodesource's nodejs,
# which ships npm) already serves, and asking apt for Debian's own would conflict with it; likewise a Python that
# has its venv module (pyenv's, say) needs no Debian python3.11-venv, and neither does a venv already made.
system-deps:
	@installed=" $$(dpkg-query -W -f='$${db:Status-Status} $${Package}\n' $(APT_PACKAGES) 2>/dev/null \
	  | awk '$$1 == "installed" {print $$2}' | tr '\n' ' ') "; \
	missing=$$(for p in $(APT_PACKAGES); do case "$$installed" in *" $$p "*) ;; *) echo $$p;; esac; done; \
	  command -v javac >/dev/null || echo default-jdk-headless; command -v npm >/dev/null || echo nodejs npm; \
	  [ -x $(PY) ] || $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || echo $(notdir $(PYTHON))-venv); \
	missing=$$(echo $$missing); [ -n "$$missing" ] || exit 0; \
	if ! command -v apt-get >/dev/null; then \
	  echo "make needs these Debian packages, which are missing: $$missing" >&2; \
	  echo "This machine has no apt-get: install them or their equivalents, then run make again." >&2; exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then as_root=; elif command -v sudo >/dev/null; then as_root=sudo; else \
	  echo "make needs these Debian packages, which are missing: $$missing" >&2; \
	  echo "Neither root nor sudo here: as root, apt-get install $$missing; then run make again." >&2; exit 1; fi; \
	echo "installing Debian packages: $$missing"; \
	$$as_root apt-get update -qq && \
	$$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null

$(BUF): | system-deps
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
	$(VENV)/bin/hadolint --config .hadolint.yaml $(DOCKERFILE)
	cd protos && ../$(BUF) lint

protos: install
	PYTHON=$(PY) scripts/gen_protos.sh

# Real sounds for the benches, from Debian's game-data packages: /tmp/dev-sounds (effects) and /tmp/dev-music.
dev-data:
	test -d /tmp/dev-sounds || scripts/fetch-dev-sounds.sh /tmp/dev-sounds
	test -d /tmp/dev-music || scripts/fetch-dev-music.sh /tmp/dev-music

bench: install dev-data
	$(PY) -m bench.quality
	$(PY) -m bench.throughput
	$(PY) -m bench.search_latency
	$(PY) -m bench.vector_scale --count 100000

weights: install
	$(PY) -m audiosearch.embedder.fetch_weights --output $(WEIGHTS)

images:
	@command -v docker >/dev/null || { echo "make images needs Docker with BuildKit"; exit 1; }
	for s in $(IMAGE_SERVICES); do \
	  DOCKER_BUILDKIT=1 docker build -f $(DOCKERFILE) --build-arg SERVICE=$$s -t $(IMAGE_REGISTRY)/$$s:$(IMAGE_TAG) . \
	    || exit 1; \
	done

lint-deploy: install
	$(VENV)/bin/hadolint --config .hadolint.yaml $(DOCKERFILE)
	$(PY) -m pytest -q tests/deploy

clients: system-deps
	scripts/build_clients.sh build/clients

clean:
	rm -rf build $(STATE_DIR)/logs
