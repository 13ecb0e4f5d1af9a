# ferry - the two commands of the README, plus plain `make`.
#   make        builds build/ferry (optimised, with debug info)
#   make run    installs what is missing, builds, and starts `ferry serve` (SQLite)
#   make test   installs what is missing, builds with sanitizers, runs unit and API tests
#               (each starts its own throwaway PostgreSQL)
#   make examples builds the programs under examples/ on libferry (build/examples/)
#   make install  installs binary, man page, sample config and systemd unit under
#               $(PREFIX) (default /usr/local), below $(DESTDIR) when given

BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST     ?= /usr/bin/python3 -m pytest
RUN_ARGS   ?=
PREFIX     ?= /usr/local
DESTDIR    ?=

.PHONY: examples all build run test unit api bootstrap bootstrap-run peers clean format format-check \
	install fuzz fuzz-smoke

all: build

bootstrap:
	@scripts/bootstrap.sh test

bootstrap-run:
	@scripts/bootstrap.sh run

peers:
	@scripts/test-peers.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_SANITIZE=OFF \
		-DFERRY_TESTS=OFF -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

examples: build
	@cmake --build $(BUILD) --target examples

run: bootstrap-run build
	./$(BUILD)/ferry serve $(RUN_ARGS)

install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD)

$(TEST_BUILD)/ferry: FORCE
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)

# The unit tests run against SQLite and a throwaway PostgreSQL cluster (FERRY_TEST_PG_URL),
# stopped afterwards whatever the tests' outcome.
unit: $(TEST_BUILD)/ferry
	@pgdir=$$(mktemp -d /tmp/ferry-unit-pg-XXXXXX); \
	url=$$(scripts/test-pg.sh start $$pgdir) || { scripts/test-pg.sh stop $$pgdir; exit 1; }; \
	(cd $(TEST_BUILD) && FERRY_TEST_PG_URL=$$url ctest --output-on-failure); rc=$$?; \
	scripts/test-pg.sh stop $$pgdir; exit $$rc

api: $(TEST_BUILD)/ferry peers
	FERRY_BIN=$(CURDIR)/$(TEST_BUILD)/ferry $(PYTEST) -q -p no:cacheprovider tests/api

# C sources clang-format decides on (.clang-format at the root).
C_SOURCES = $(shell git ls-files -- 'src/*.[ch]' 'tests/*.[ch]' 'bench/*.[ch]' 2>/dev/null)

format:
	@clang-format -i $(C_SOURCES)

format-check:
	@clang-format --dry-run --Werror $(C_SOURCES) || \
		{ echo 'C sources are not formatted: run make format' >&2; exit 1; }

# Fuzzing (tests/fuzz/): libFuzzer drivers built by clang with ASan and UBSan.
#   make fuzz         runs each driver for FUZZ_SECONDS (default 60)
#   make fuzz-smoke   runs each for FUZZ_SMOKE_SECONDS (default 3); part of make test
FUZZ_BUILD         ?= build-fuzz
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 3

fuzzers: FORCE
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFERRY_FUZZ=ON \
		-DFERRY_TESTS=OFF >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

fuzz: fuzzers
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

fuzz-smoke: fuzzers
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

test: bootstrap
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory api

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)

.PHONY: FORCE
FORCE:
