# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint test-jax venv bench clean proto triton-venv extras bench-peers browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/reuse quickstart
	@echo ""
	@echo "The reuse command lives in $(VENV)/bin, which is not on your PATH. For the README's tour, either"
	@echo "  source $(VENV)/bin/activate    # then: reuse --help"
	@echo "or call it by its path: $(BIN)/reuse --help"

lint: $(STAMP)
	$(BIN)/ruff check .

# The tests also cover the optional engines: Ray (reuse advise --ray), JAX (data-parallel training), KerasHub
# backbones (tests/test_trust.py) and boto3 with a local moto S3 server (the s3:// store). A separate stamp
# keeps `make run` from installing them. ONNX Runtime, the default serving runtime, is a core dependency:
# `make run` installs it.
EXTRAS := $(VENV)/.extras-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
$(EXTRAS): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,ray,jax,s3,hub]'
	rm -f $(VENV)/.extras-*; touch $@

extras: $(EXTRAS)

test: $(STAMP) $(EXTRAS) triton-venv browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# A separate environment for the stock KServe client tests, gRPC and HTTP (tritonclient pins protobuf < 7).
# Failing to build it (no network) is not an error: those tests then skip and say why. .installed-http
# marks a venv that has the http extra too (one built before it gets it added).
TRITON_VENV ?= .venv-triton
triton-venv:
	@test -f $(TRITON_VENV)/.installed-http || ( ( test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV) ) \
	  && $(TRITON_VENV)/bin/python -m pip install -q 'tritonclient[grpc,http]' numpy \
	  && touch $(TRITON_VENV)/.installed $(TRITON_VENV)/.installed-http ) \
	  || echo "warning: could not build $(TRITON_VENV); the stock-client tests will skip"

# The dashboard tests drive a real headless Chromium (Debian's chromium + chromium-driver). Installed here
# when missing and we are root (CI); otherwise those tests skip and say why.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	  ( if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	    else echo "warning: no chromium/chromedriver and not root: the dashboard browser tests will skip"; fi ) \
	  || echo "warning: could not install chromium; the dashboard browser tests will skip"

# The same suite on the JAX backend (CI runs TensorFlow; keep this green too).
test-jax: $(STAMP) $(EXTRAS)
	KERAS_BACKEND=jax $(BIN)/python -m pytest

proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

# Peer servers for bench/serve.py, each in its own venv (they pin numpy<2): PyTriton with a TensorFlow and an
# ONNX Runtime forward (gRPC and HTTP), and MLServer 1.7.1 with an ONNX Runtime runtime (HTTP; uvloop<0.22:
# 0.22 crash-loops its workers). Never part of `make test`; bench/serve.py runs them when these venvs exist.
PEERS_VENV ?= .venv-peers
MLSERVER_VENV ?= .venv-mlserver
bench-peers:
	@test -f $(PEERS_VENV)/.installed || ( $(PYTHON) -m venv $(PEERS_VENV) \
	  && $(PEERS_VENV)/bin/python -m pip install -q nvidia-pytriton==0.7.0 tensorflow-cpu==2.21.0 'numpy<2' \
	       onnxruntime tf2onnx \
	  && touch $(PEERS_VENV)/.installed )
	@test -f $(MLSERVER_VENV)/.installed || ( $(PYTHON) -m venv $(MLSERVER_VENV) \
	  && $(MLSERVER_VENV)/bin/python -m pip install -q mlserver==1.7.1 'uvloop<0.22' onnxruntime 'numpy<2' \
	  && touch $(MLSERVER_VENV)/.installed )

bench: $(STAMP)
	mkdir -p bench/out
	for b in bench/[!_]*.py; do $(BIN)/python $$b --out bench/out/$$(basename $$b .py).json || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache bench/out
