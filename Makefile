# disco: `make demo` and `make test` do all the set-up on a fresh Debian machine.
SWIFT ?= swift
CONFIG ?= release
# Tests run optimised (the numeric kernels are far too slow unoptimised) with testability on.
TESTFLAGS = -c $(CONFIG) -Xswiftc -enable-testing
DISCO = .build/$(CONFIG)/disco
DEMO_DATA = datasets/edges-shoes-32
DEMO_RUN = checkpoints/demo-edges-shoes

# Python with torch, safetensors and Pillow for the PyTorch interop tests (../shared/bench/README.md).
TORCH_PY ?= /tmp/torchenv/bin/python

.PHONY: deps openblas-bf16 build test test-matrix test-interop demo bench clean

deps:
	@bash scripts/install-deps.sh

# OpenBLAS with bfloat16 GEMMs, for --bf16 (Debian's lacks them): .deps/openblas-bf16/libopenblas.so.
openblas-bf16: deps
	@bash scripts/build-openblas-bf16.sh

build: deps
	$(SWIFT) build -c $(CONFIG) --product disco

# The whole suite, then the numeric suites again under im2col and Winograd, each with two OpenBLAS
# kernel sets (the CPU's best and another), so a result that depends on the CPU kind fails here.
# The bfloat16 GEMM tests need openblas-bf16.
test: deps openblas-bf16
	$(SWIFT) build $(TESTFLAGS) --build-tests
	$(SWIFT) test $(TESTFLAGS) --skip-build --disable-swift-testing
	SWIFT=$(SWIFT) CONFIG=$(CONFIG) bash scripts/test-matrix.sh ci
	@if $(TORCH_PY) -c "import torch, safetensors, PIL" 2>/dev/null; then \
	  DISCO=$(DISCO) $(TORCH_PY) scripts/test_interop.py; \
	else echo "test-interop: skipped (no torch at $(TORCH_PY); make test-interop installs it)"; fi

# Weights both ways between disco and PyTorch (scripts/test_interop.py), torch installed first.
test-interop: build
	$(TORCH_PY) -c "import torch, safetensors, PIL" 2>/dev/null || \
	  (python3 -m venv $(dir $(TORCH_PY)).. && $(dir $(TORCH_PY))pip install -q torch safetensors numpy pillow tensorboard)
	DISCO=$(DISCO) $(TORCH_PY) scripts/test_interop.py

# Every convolution algorithm under every kernel set this CPU runs, then a DISCO_PORTABLE=1 build.
test-matrix: deps openblas-bf16
	$(SWIFT) build $(TESTFLAGS) --build-tests
	SWIFT=$(SWIFT) CONFIG=$(CONFIG) bash scripts/test-matrix.sh full

# The main job end to end: data, a short training run (a few minutes), translation, evaluation.
demo: build
	$(DISCO) info
	test -d $(DEMO_DATA)/testB || $(DISCO) data fashion-mnist edges-shoes --out $(DEMO_DATA) --size 32
	rm -rf $(DEMO_RUN)
	$(DISCO) train $(DEMO_DATA) --size 32 --channels 1 --iterations 300 --curriculum 100 --out $(DEMO_RUN) --sample-every 100 --save-every 100
	$(DISCO) translate $(DEMO_DATA)/testA --output $(DEMO_RUN)/translated --checkpoint $(DEMO_RUN)
	$(DISCO) eval --checkpoint $(DEMO_RUN) --a $(DEMO_DATA)/testA --paired-b $(DEMO_DATA)/testB --limit 500
	@echo "report: $(DEMO_RUN)/report.html"

bench: build
	$(DISCO) info
	$(DISCO) bench kernels

clean:
	rm -rf .build
