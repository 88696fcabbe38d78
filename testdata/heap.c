// heap: fills memory with a seeded pattern and verifies it after a restore.
//
// Exercises: a large anonymous mapping (malloc of MiB megabytes goes through
// mmap), the brk heap (a small malloc), the stack, .data (an initialised
// global array, dirtied) and .bss.
//
// Protocol: heap [MiB [seed [trigger]]]   (defaults: 256, 1, "trigger")
// Fills everything with xorshift64 patterns derived from seed, writes
// "ready\n" to stdout, then polls every 1 ms until the trigger file exists.
// Then verifies every region and writes "OK\n" and exits 0, or writes
// "FAIL <region> at offset N\n" (offset in bytes) and exits 1.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STACK_WORDS 2048 // 16 KiB
#define SMALL_BYTES (64 * 1024) // below the mmap threshold: lives in brk
#define BSS_WORDS 4096

// .data: must stay initialised data (non-zero initialiser), then dirtied.
static uint64_t data_arr[512] = { 0x0123456789abcdefULL, 0xfedcba9876543210ULL, 42 };
// .bss
static uint64_t bss_arr[BSS_WORDS];

static void say(const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t n = write(1, s, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		s += n;
		len -= (size_t)n;
	}
}

static void wait_trigger(const char *path)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000L };
	while (access(path, F_OK) != 0)
		nanosleep(&ts, NULL);
}

static uint64_t rng_init(uint64_t seed, uint64_t salt)
{
	uint64_t s = (seed + salt) * 0x9E3779B97F4A7C15ULL;
	return s ? s : 0x2545F4914F6CDD1DULL;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void fill(uint64_t *p, size_t words, uint64_t seed, uint64_t salt)
{
	uint64_t s = rng_init(seed, salt);
	for (size_t i = 0; i < words; i++)
		p[i] = rng_next(&s);
}

// check returns 1 if ok; otherwise prints a FAIL line and returns 0.
static int check(const char *what, const uint64_t *p, size_t words, uint64_t seed, uint64_t salt)
{
	uint64_t s = rng_init(seed, salt);
	for (size_t i = 0; i < words; i++) {
		if (p[i] != rng_next(&s)) {
			char buf[128];
			snprintf(buf, sizeof(buf), "FAIL %s at offset %zu\n", what, i * 8);
			say(buf);
			return 0;
		}
	}
	return 1;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 256;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
	const char *trigger = argc > 3 ? argv[3] : "trigger";
	size_t big_words = mib * 1024 * 1024 / 8;
	volatile uint64_t stack_arr[STACK_WORDS];
	uint64_t *big, *small;

	if (data_arr[0] != 0x0123456789abcdefULL || data_arr[2] != 42) {
		say("FAIL data initialiser\n");
		return 1;
	}
	big = malloc(big_words * 8);
	small = malloc(SMALL_BYTES);
	if (!big || !small) {
		say("FAIL malloc\n");
		return 1;
	}
	fill(big, big_words, seed, 1);
	fill(small, SMALL_BYTES / 8, seed, 2);
	fill((uint64_t *)stack_arr, STACK_WORDS, seed, 3);
	fill(data_arr, sizeof(data_arr) / 8, seed, 4);
	fill(bss_arr, BSS_WORDS, seed, 5);

	say("ready\n");
	wait_trigger(trigger);

	if (!check("heap", big, big_words, seed, 1) ||
	    !check("brk", small, SMALL_BYTES / 8, seed, 2) ||
	    !check("stack", (const uint64_t *)stack_arr, STACK_WORDS, seed, 3) ||
	    !check("data", data_arr, sizeof(data_arr) / 8, seed, 4) ||
	    !check("bss", bss_arr, BSS_WORDS, seed, 5))
		return 1;
	say("OK\n");
	return 0;
}
