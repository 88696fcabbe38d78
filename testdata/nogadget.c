// cflags: -nostdlib -static -fno-stack-protector -fno-builtin -O1
//
// nogadget: a program without a C library, so without any sigreturn
// gadget (`mov $15, %eax; syscall`) in its code, for the fallback of
// rtcr's kill-safe injection.
//
// Exercises: injection into a process rtcr must bring its own gadget to,
// and (with "heapstack") into a process whose stack pointer is not in its
// [stack] mapping.
//
// Protocol: nogadget [heapstack]
// With heapstack it first moves its stack into an anonymous mapping of its
// own. It writes "ready\n", then loops: nanosleep 1 ms with raw system
// calls, checks the call's result (0 or -EINTR) and a value kept in a
// callee-saved register across it, and writes "tick N\n" every 64 rounds.
// On a wrong result it writes "FAIL\n" and exits 1.

typedef unsigned long u64;

static long sys3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

static void out(const char *s, long n)
{
	sys3(1, 1, (long)s, n);
}

static void tick(u64 n)
{
	char buf[32] = "tick ";
	char digits[20];
	int d = 0, i = 5;
	do {
		digits[d++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	while (d)
		buf[i++] = digits[--d];
	buf[i++] = '\n';
	out(buf, i);
}

static void loop(void) __attribute__((noreturn, used));
static void loop(void)
{
	struct {
		long sec, nsec;
	} ts = {0, 1000000};
	out("ready\n", 6);
	for (u64 i = 0;; i++) {
		u64 keep = i * 2654435761u;
		long r = sys3(35, (long)&ts, 0, 0); // nanosleep
		if ((r != 0 && r != -4) || keep != i * 2654435761u) {
			out("FAIL\n", 5);
			sys3(231, 1, 0, 0); // exit_group
		}
		if (i % 64 == 0)
			tick(i);
	}
}

void cmain(long *sp) __attribute__((noreturn, used));
void cmain(long *sp)
{
	long argc = sp[0];
	if (argc > 1) {
		// An anonymous mapping of our own as the stack.
		long size = 1 << 16;
		long m = sys6(9, 0, size, 3, 0x22, -1, 0); // mmap RW, private anonymous
		if (m < 0)
			sys3(231, 2, 0, 0);
		__asm__ volatile("mov %0, %%rsp\n\tcall loop" : : "r"(m + size - 64) : "memory");
	}
	loop();
}

__asm__(".globl _start\n"
	"_start:\n"
	"\txor %rbp, %rbp\n"
	"\tmov %rsp, %rdi\n"
	"\tand $-16, %rsp\n"
	"\tcall cmain\n"
	"\thlt\n");
