/*
 * LD_PRELOAD shim for the private pcscd of the vpcd test stack (docs: test-fixtures/src/vpcd/nodelay.ts).
 *
 * vsmartcard-vpcd 3.3 sends a frame's 2-byte length and its payload in two send() calls. With Nagle on, the payload
 * waits for the card's delayed ACK, so every APDU costs about 44 ms (pcsc-stack.md section 3). Setting TCP_NODELAY on
 * every TCP socket pcscd creates or accepts brings that down to about 0.1 ms.
 *
 * It also asks the kernel to SIGTERM pcscd when the process that started it dies: a test runner that is killed hard
 * must not leave a pcscd behind holding its vpcd ports.
 *
 * Build: gcc -shared -fPIC -o build/nodelay.so nodelay.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>

/* Fails harmlessly on non-TCP sockets (pcscd's own Unix socket); errno is kept for the caller. */
static int nodelay(int fd) {
  int saved = errno, one = 1;
  if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  errno = saved;
  return fd;
}

int socket(int domain, int type, int protocol) {
  static int (*real)(int, int, int);
  if (!real) real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
  int fd = real(domain, type, protocol);
  return domain == AF_INET || domain == AF_INET6 ? nodelay(fd) : fd;
}

int accept(int s, struct sockaddr *addr, socklen_t *len) {
  static int (*real)(int, struct sockaddr *, socklen_t *);
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
  return nodelay(real(s, addr, len));
}

int accept4(int s, struct sockaddr *addr, socklen_t *len, int flags) {
  static int (*real)(int, struct sockaddr *, socklen_t *, int);
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
  return nodelay(real(s, addr, len, flags));
}

__attribute__((constructor)) static void die_with_parent(void) { prctl(PR_SET_PDEATHSIG, SIGTERM); }
