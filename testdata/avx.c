// cflags: -mavx
//
// avx: extended FPU state (XSAVE area) must survive checkpoint/restore.
//
// Exercises: the upper halves of ymm0..ymm15 (AVX), and when the CPU has
// AVX-512 also zmm0..zmm31 and the opmask registers k1..k7; MXCSR set to a
// non-default value (round toward zero, FTZ, DAZ); the x87 control word set
// to a non-default value and two 80-bit values left on the x87 stack.
//
// Protocol: avx [trigger [mode [corrupt]]]   (default trigger: "trigger")
//   mode: auto (default: avx512 if the CPU and kernel support it, else avx),
//         avx or avx512.
//   corrupt: a debug bit mask, 0 by default, to prove the checks can fail:
//         1 zeroes the upper bits of ymm13, 2 resets MXCSR and the x87
//         control word, 4 negates an x87 value, 8 (avx512 only) zeroes
//         zmm29 and k5. Applied after the trigger is seen, before the
//         registers are read back.
// Writes "mode avx\n" or "mode avx512\n", then loads the registers and,
// from the same inline asm block, writes "ready\n" with a raw write syscall
// and polls with raw access(trigger, F_OK) / nanosleep(1 ms) syscalls until
// the trigger exists (the syscall instruction only clobbers rax, rcx and
// r11; the kernel preserves all vector and x87 state). Still inside that
// block it stores the registers to memory; then it compares them with the
// patterns and writes "OK\n" and exits 0, or writes one
// "FAIL <register> ...\n" line per bad register and exits 1.
// If the CPU or kernel lacks AVX it writes "SKIP no AVX\n" and exits 77.
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MXCSR_IN 0xFFC0u // round toward zero, FTZ, DAZ, all masked
#define FCW_IN 0x087Fu // 24-bit precision, round up, all masked

struct ctx {
	uint8_t pat[32][64]; // vector register patterns
	uint8_t out[32][64]; // vector registers read back
	uint64_t kpat[8]; // opmask patterns (16 bits used: kmovw)
	uint64_t kout[8];
	const char *path;
	struct timespec ts;
	const char *msg;
	long msglen;
	long corrupt;
	uint32_t mxcsr_in, mxcsr_out, mxcsr_saved;
	uint16_t fcw_in, fcw_out, fcw_saved;
	uint8_t x87_in[2][16], x87_out[2][16];
};

static struct ctx c;

// Operands shared by both asm blocks.
#define OPERANDS                                                                        \
	: [c] "r"(&c), [o_out] "i"(offsetof(struct ctx, out)),                          \
	  [o_kpat] "i"(offsetof(struct ctx, kpat)), [o_kout] "i"(offsetof(struct ctx, kout)), \
	  [o_path] "i"(offsetof(struct ctx, path)), [o_ts] "i"(offsetof(struct ctx, ts)),    \
	  [o_msg] "i"(offsetof(struct ctx, msg)), [o_msglen] "i"(offsetof(struct ctx, msglen)), \
	  [o_corrupt] "i"(offsetof(struct ctx, corrupt)),                                \
	  [o_mxin] "i"(offsetof(struct ctx, mxcsr_in)),                                  \
	  [o_mxout] "i"(offsetof(struct ctx, mxcsr_out)),                                \
	  [o_mxsaved] "i"(offsetof(struct ctx, mxcsr_saved)),                            \
	  [o_fcwin] "i"(offsetof(struct ctx, fcw_in)),                                   \
	  [o_fcwout] "i"(offsetof(struct ctx, fcw_out)),                                 \
	  [o_fcwsaved] "i"(offsetof(struct ctx, fcw_saved)),                             \
	  [o_x87in] "i"(offsetof(struct ctx, x87_in)),                                   \
	  [o_x87out] "i"(offsetof(struct ctx, x87_out)),                                 \
	  [SYS_write_] "i"(SYS_write), [SYS_access_] "i"(SYS_access),                   \
	  [SYS_nanosleep_] "i"(SYS_nanosleep)

#define CLOBBERS_BASE "rax", "rcx", "rdx", "rsi", "rdi", "r11", "memory", "cc", "st", "st(1)"
#define CLOBBERS_XMM                                                                    \
	"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",  \
	    "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

// Set MXCSR and the x87 control word, push two x87 values.
#define PROLOGUE                                    \
	"stmxcsr %c[o_mxsaved](%[c])\n\t"           \
	"ldmxcsr %c[o_mxin](%[c])\n\t"              \
	"fnstcw %c[o_fcwsaved](%[c])\n\t"           \
	"fldcw %c[o_fcwin](%[c])\n\t"               \
	"fldt %c[o_x87in](%[c])\n\t"                \
	"fldt %c[o_x87in]+16(%[c])\n\t"

// write(1, "ready\n"), then until access(path, F_OK) == 0: nanosleep(1 ms).
#define READY_AND_WAIT                              \
	"mov %[SYS_write_], %%eax\n\t"              \
	"mov $1, %%edi\n\t"                         \
	"mov %c[o_msg](%[c]), %%rsi\n\t"            \
	"mov %c[o_msglen](%[c]), %%rdx\n\t"         \
	"syscall\n"                                 \
	"1:\n\t"                                    \
	"mov %[SYS_access_], %%eax\n\t"             \
	"mov %c[o_path](%[c]), %%rdi\n\t"           \
	"xor %%esi, %%esi\n\t"                      \
	"syscall\n\t"                               \
	"test %%rax, %%rax\n\t"                     \
	"jz 2f\n\t"                                 \
	"mov %[SYS_nanosleep_], %%eax\n\t"          \
	"lea %c[o_ts](%[c]), %%rdi\n\t"             \
	"xor %%esi, %%esi\n\t"                      \
	"syscall\n\t"                               \
	"jmp 1b\n"                                  \
	"2:\n\t"

// Debug corruption (bits 1, 2, 4), only to prove that the checks can fail.
#define CORRUPT                                     \
	"mov %c[o_corrupt](%[c]), %%rax\n\t"        \
	"test $1, %%eax\n\t"                        \
	"jz 3f\n\t"                                 \
	"vmovdqa %%xmm13, %%xmm13\n" /* zeroes bits 128.. */ \
	"3:\n\t"                                    \
	"test $2, %%eax\n\t"                        \
	"jz 4f\n\t"                                 \
	"ldmxcsr %c[o_mxsaved](%[c])\n\t"           \
	"fldcw %c[o_fcwsaved](%[c])\n"             \
	"4:\n\t"                                    \
	"test $4, %%eax\n\t"                        \
	"jz 5f\n\t"                                 \
	"fchs\n"                                    \
	"5:\n\t"

// Read back x87 values, FCW, MXCSR, and restore the saved FCW and MXCSR.
#define EPILOGUE                                    \
	"fstpt %c[o_x87out]+16(%[c])\n\t"           \
	"fstpt %c[o_x87out](%[c])\n\t"              \
	"fnstcw %c[o_fcwout](%[c])\n\t"             \
	"fldcw %c[o_fcwsaved](%[c])\n\t"            \
	"stmxcsr %c[o_mxout](%[c])\n\t"             \
	"ldmxcsr %c[o_mxsaved](%[c])\n\t"

#define LDY(n) "vmovdqu " #n "*64(%[c]), %%ymm" #n "\n\t"
#define STY(n) "vmovdqu %%ymm" #n ", %c[o_out]+" #n "*64(%[c])\n\t"
#define LDZ(n) "vmovdqu64 " #n "*64(%[c]), %%zmm" #n "\n\t"
#define STZ(n) "vmovdqu64 %%zmm" #n ", %c[o_out]+" #n "*64(%[c])\n\t"
#define LDK(n) "kmovw %c[o_kpat]+" #n "*8(%[c]), %%k" #n "\n\t"
#define STK(n) "kmovw %%k" #n ", %c[o_kout]+" #n "*8(%[c])\n\t"

#define Y16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) \
	M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define Z32(M) Y16(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) \
	M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define K7(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

static void run_avx(void)
{
	__asm__ volatile(Y16(LDY) PROLOGUE READY_AND_WAIT CORRUPT EPILOGUE Y16(STY)
			 "vzeroupper\n\t"
			 :
			 OPERANDS
			 : CLOBBERS_BASE, CLOBBERS_XMM);
}

__attribute__((target("avx512f"))) static void run_avx512(void)
{
	__asm__ volatile(Z32(LDZ) K7(LDK) PROLOGUE READY_AND_WAIT CORRUPT
			 "test $8, %%eax\n\t"
			 "jz 6f\n\t"
			 "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
			 "kxorw %%k5, %%k5, %%k5\n"
			 "6:\n\t"
			 EPILOGUE Z32(STZ) K7(STK)
			 "vzeroupper\n\t"
			 :
			 OPERANDS
			 : CLOBBERS_BASE, CLOBBERS_XMM,
			   "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
			   "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31",
			   "k1", "k2", "k3", "k4", "k5", "k6", "k7");
}

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

int main(int argc, char **argv)
{
	const char *mode = argc > 2 ? argv[2] : "auto";
	int nregs, bytes, nk, bad = 0;
	char buf[512];

	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx")) {
		say("SKIP no AVX\n");
		return 77;
	}
	if (strcmp(mode, "auto") == 0)
		mode = __builtin_cpu_supports("avx512f") ? "avx512" : "avx";
	if (strcmp(mode, "avx512") == 0) {
		if (!__builtin_cpu_supports("avx512f")) {
			say("SKIP no AVX-512\n");
			return 77;
		}
		nregs = 32, bytes = 64, nk = 8;
	} else if (strcmp(mode, "avx") == 0) {
		nregs = 16, bytes = 32, nk = 0;
	} else {
		say("FAIL usage: avx [trigger [auto|avx|avx512 [corrupt]]]\n");
		return 2;
	}

	// Distinct, position-dependent bytes in every register and lane.
	for (int r = 0; r < 32; r++)
		for (int i = 0; i < 64; i++)
			c.pat[r][i] = (uint8_t)(r * 37 + i * 13 + 0x5b) ^ (uint8_t)(i >= 16 ? 0xa5 : 0);
	for (int k = 0; k < 8; k++)
		c.kpat[k] = 0x1111u * (uint64_t)k ^ 0x8421u;
	long double x0 = 3.14159265358979323846264338327950288L;
	long double x1 = -2.71828182845904523536028747135266250L;
	memcpy(c.x87_in[0], &x0, 10);
	memcpy(c.x87_in[1], &x1, 10);
	c.mxcsr_in = MXCSR_IN;
	c.fcw_in = FCW_IN;
	c.path = argc > 1 ? argv[1] : "trigger";
	c.ts.tv_nsec = 1000000L;
	c.msg = "ready\n";
	c.msglen = 6;
	c.corrupt = argc > 3 ? strtol(argv[3], NULL, 0) : 0;

	snprintf(buf, sizeof(buf), "mode %s\n", mode);
	say(buf);
	if (nk)
		run_avx512();
	else
		run_avx();

	for (int r = 0; r < nregs; r++) {
		for (int i = 0; i < bytes; i++) {
			if (c.out[r][i] != c.pat[r][i]) {
				snprintf(buf, sizeof(buf), "FAIL %cmm%d byte %d: %#x != %#x\n",
					 nk ? 'z' : 'y', r, i, c.out[r][i], c.pat[r][i]);
				say(buf);
				bad = 1;
				break;
			}
		}
	}
	for (int k = 1; k < nk; k++) {
		if ((c.kout[k] & 0xffff) != (c.kpat[k] & 0xffff)) {
			snprintf(buf, sizeof(buf), "FAIL k%d: %#llx != %#llx\n", k,
				 (unsigned long long)(c.kout[k] & 0xffff),
				 (unsigned long long)(c.kpat[k] & 0xffff));
			say(buf);
			bad = 1;
		}
	}
	if (c.mxcsr_out != MXCSR_IN) {
		snprintf(buf, sizeof(buf), "FAIL mxcsr: %#x != %#x\n", c.mxcsr_out, MXCSR_IN);
		say(buf);
		bad = 1;
	}
	if (c.fcw_out != FCW_IN) {
		snprintf(buf, sizeof(buf), "FAIL x87 control word: %#x != %#x\n", c.fcw_out, FCW_IN);
		say(buf);
		bad = 1;
	}
	for (int i = 0; i < 2; i++) {
		if (memcmp(c.x87_out[i], c.x87_in[i], 10) != 0) {
			snprintf(buf, sizeof(buf), "FAIL x87 st(%d)\n", 1 - i);
			say(buf);
			bad = 1;
		}
	}
	if (bad)
		return 1;
	say("OK\n");
	return 0;
}
