# disco: `make demo` and `make test` do all the set-up on a fresh Debian machine.
SWIFT ?= swift
CONFIG ?= release
# Tests run optimised (the numeric kernels are far too slow unoptimised) with testability on.
TESTFLAGS = -c $(CONFIG) -Xswiftc -enable-testing
DISCO = .build/$(CONFIG)/disco
DEMO_DATA = datasets/edges-shoes-32
DEMO_RUN = checkpoints/demo-edges-shoes

.PHONY: deps build test demo bench clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build -c $(CONFIG) --product disco

test: deps
	$(SWIFT) build $(TESTFLAGS) --build-tests
	$(SWIFT) test $(TESTFLAGS) --skip-build --disable-swift-testing

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
