// rseqcs: a thread that spends its life inside an rseq critical section
// and notices if the section goes on after the thread changed CPU.
//
// Exercises: the kernel's rseq abort. A thread preempted (or moved to
// another CPU) inside a critical section must restart at the section's
// abort handler; one that carries on inside the section after a move has
// lost the guarantee rseq gives (per-CPU data would be corrupted).
//
// Protocol: rseqcs [heapstack]
// With heapstack the loop runs on a stack malloc'd from the heap
// (makecontext), not in the [stack] mapping. Uses the rseq area glibc registered for the main thread. Writes "ready\n",
// then loops: enters a critical section that reads the CPU number from the
// rseq area and spins comparing it with the area's current value. Aborts
// (preemption, signals, a move to another CPU) restart the loop. If the CPU
// number changes while the section runs, it writes "VIOLATION\n" and exits
// with status 1. It writes "aborts N\n" every 1024 aborts. Exits 2 without
// rseq.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/rseq.h>
#include <ucontext.h>
#include <unistd.h>

static long aborts;

static void say(const char *s, long n)
{
	char buf[64];
	int len = snprintf(buf, sizeof(buf), s, n);
	if (write(1, buf, (size_t)len) < 0)
		_exit(3);
}

static void spin(void)
{
	struct rseq *rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	say("ready\n", 0);
	for (;;) {
		__asm__ goto(
			".pushsection __rseq_cs, \"aw\"\n\t"
			".balign 32\n\t"
			"3: .long 0, 0\n\t"
			".quad 1f, (2f - 1f), 4f\n\t"
			".popsection\n\t"
			"leaq 3b(%%rip), %%rax\n\t"
			"movq %%rax, %[rseq_cs]\n\t"
			"1:\n\t"
			"movl %[cpu_id], %%ecx\n\t"
			"5:\n\t"
			"cmpl %[cpu_id], %%ecx\n\t"
			"jne %l[violation]\n\t"
			"jmp 5b\n\t"
			"2:\n\t"
			".pushsection __rseq_failure, \"ax\"\n\t"
			".byte 0x0f, 0xb9, 0x3d\n\t"
			".long 0x53053053\n\t"
			"4:\n\t"
			"jmp %l[aborted]\n\t"
			".popsection\n\t"
			:
			: [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id)
			: "rax", "rcx", "memory", "cc"
			: aborted, violation);
	aborted:
		if (++aborts % 1024 == 0)
			say("aborts %ld\n", aborts);
		continue;
	violation:
		say("VIOLATION\n", 0);
		_exit(1);
	}
}

int main(int argc, char **argv)
{
	(void)argv;
	if (__rseq_size == 0)
		return 2;
	if (argc < 2) {
		spin();
		return 0;
	}
	static ucontext_t self, loop;
	size_t size = 1 << 16;
	if (getcontext(&loop) != 0 || !(loop.uc_stack.ss_sp = malloc(size)))
		return 2;
	loop.uc_stack.ss_size = size;
	makecontext(&loop, spin, 0);
	swapcontext(&self, &loop);
	return 0;
}
