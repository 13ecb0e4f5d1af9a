# ferry - the two commands of the README, plus plain `make`.
#   make        builds build/ferry (optimised, with debug info)
#   make run    installs what is missing, builds, and starts `ferry serve` (SQLite)
#   make test   installs what is missing, builds with sanitizers, runs unit and API tests
#               (each starts its own throwaway PostgreSQL)

BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST     ?= /usr/bin/python3 -m pytest
RUN_ARGS   ?=

.PHONY: all build run test unit api bootstrap peers clean format format-check

all: build

bootstrap:
	@scripts/bootstrap.sh

peers:
	@scripts/test-peers.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_SANITIZE=OFF \
		-DFERRY_TESTS=OFF >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: bootstrap build
	./$(BUILD)/ferry serve $(RUN_ARGS)

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

test: bootstrap
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory api

clean:
	rm -rf $(BUILD) $(TEST_BUILD)

.PHONY: FORCE
FORCE:
