/* Test-only LD_PRELOAD shim for redis-server: after each successful fsync or fdatasync it
 * appends "<path> <size>" to $FSYNC_LOG, the file's size taken before the call. Whatever
 * was in the file then is on the disk after the call, so a test can cut a file back to
 * its last logged size and so reproduce exactly what a power loss would keep of it
 * (tests/support/crash_service.py, FsyncedAof). With $FSYNC_DELAY_MS, each fsync of an
 * incremental AOF file (*.incr.aof) first sleeps that long: a slow disk.
 * Built by tests/support/fsynclog/__init__.py. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int path_of(int fd, char *path, size_t room) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t length = readlink(link, path, room - 1);
    if (length < 0) return -1;
    path[length] = '\0';
    return 0;
}

static void slow_disk(int fd) {
    const char *delay = getenv("FSYNC_DELAY_MS");
    char path[PATH_MAX];
    if (delay && path_of(fd, path, sizeof path) == 0 && strstr(path, ".incr.aof"))
        usleep((useconds_t)atoi(delay) * 1000);
}

static long long size_of(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 ? (long long)st.st_size : -1;
}

static void note(int fd, long long size) {
    const char *log = getenv("FSYNC_LOG");
    char path[PATH_MAX], line[PATH_MAX + 32];
    if (!log || size < 0 || path_of(fd, path, sizeof path) != 0) return;
    int count = snprintf(line, sizeof line, "%s %lld\n", path, size);
    int out = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (out < 0) return;
    if (write(out, line, count) < 0) { /* nothing to do: the test finds no line */ }
    close(out);
}

static int logged(int (*real)(int), int fd) {
    slow_disk(fd);
    long long size = size_of(fd);
    int result = real(fd);
    if (result == 0) note(fd, size);
    return result;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return logged(real, fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return logged(real, fd);
}
