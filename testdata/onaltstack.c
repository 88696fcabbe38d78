// onaltstack: a thread that sits inside a signal handler running on its
// alternate signal stack.
//
// Exercises: the SS_ONSTACK flag sigaltstack(2) reports, which depends on
// where the thread's stack pointer is, not on where an injected call runs.
//
// Protocol: onaltstack
// It sets a 64 KiB alternate stack and a SIGUSR1 handler with SA_ONSTACK,
// raises SIGUSR1, and inside the handler writes "in handler\n" and sleeps
// in pause() forever.
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void handler(int sig)
{
	(void)sig;
	if (write(1, "in handler\n", 11) < 0)
		_exit(2);
	for (;;)
		pause();
}

int main(void)
{
	stack_t ss = {.ss_size = 64 << 10};
	ss.ss_sp = mmap(NULL, ss.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ss.ss_sp == MAP_FAILED || sigaltstack(&ss, NULL) != 0)
		return 1;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_ONSTACK;
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		return 1;
	raise(SIGUSR1);
	return 3;
}
