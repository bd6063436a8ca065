# evloop: everything is in evloop.h; this file builds the examples and runs
# the tests. No configure step. `make help` lists the targets.

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -std=c99 -Wall -Wextra -Wpedantic -Werror
BUILD    = build
EXAMPLES = rot13_server fifo_reader timers signals echo_server \
           rot13_stream echo_stream chat_server http_hello tcp_client threaded_server
FORMAT   = evloop.h $(wildcard examples/*.c tests/*.c tests/*.h tests/*/*.c tests/kqueue/sys/*.h)

.PHONY: all help run test bench examples format format-check clean

all: examples

help:
	@echo "make run           build and start the ROT13 demo server on 127.0.0.1:40713"
	@echo "make test          run the whole test suite (prints 'N passed, N failed')"
	@echo "make bench         benchmarks against libevent, libev, libuv (installs them)"
	@echo "make examples      build examples/*.c into $(BUILD)/examples/"
	@echo "make format        rewrite sources with clang-format"
	@echo "make format-check  fail if any source is not formatted"
	@echo "make clean         remove $(BUILD)/"

examples: $(EXAMPLES:%=$(BUILD)/examples/%)

$(BUILD)/examples/%: examples/%.c evloop.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -pthread -I. $< -o $@

run: $(BUILD)/examples/rot13_server
	@echo "Starting the ROT13 server. In another terminal, type lines into:"
	@echo "    nc 127.0.0.1 40713        (or: telnet 127.0.0.1 40713)"
	@echo "and each line comes back ROT13-encoded. Ctrl-C stops the server."
	@./$(BUILD)/examples/rot13_server

test:
	@bash tests/run_tests.sh

bench:
	@bash tests/bench/run.sh

format:
	clang-format -i $(FORMAT)

format-check:
	@clang-format --dry-run --Werror $(FORMAT)

clean:
	rm -rf $(BUILD)
